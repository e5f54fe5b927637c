"""``gptoss doctor``."""

from __future__ import annotations

from typing import Annotated, Optional
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from gptoss_cli.cli._errors import boundary
from gptoss_cli.cli._options import DestOpt, JsonOpt, output_for, settings_for

_STYLE = {"ok": "green", "warn": "yellow", "fail": "red"}


@boundary
def doctor(ctx: typer.Context, dest: DestOpt = None, json_out: JsonOpt = False) -> None:
    """Check this machine: Python, packages, torch/CUDA and GPUs, free disk, git, mirror/proxy variables."""
    from gptoss_cli.doctor import run_doctor

    out = output_for(ctx, json_out)
    settings = settings_for(ctx, {"fetch.dest": dest})
    report = run_doctor(settings["fetch.dest"])

    def human(console: Console) -> None:
        table = Table(title="gptoss doctor")
        for col in ("check", "status", "detail"):
            table.add_column(col)
        for c in report.checks:
            table.add_row(escape(c.name), f"[{_STYLE[c.status]}]{c.status}[/]", escape(c.detail))
        console.print(table)
        console.print("all required pieces present" if report.ok else "a required piece is missing")

    out.result(report, human)
    if not report.ok:
        raise typer.Exit(1)
