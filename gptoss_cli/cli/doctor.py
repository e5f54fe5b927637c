"""``gptoss doctor``."""

from __future__ import annotations

from typing import Annotated, Optional
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

from gptoss_cli.cli._errors import boundary
from gptoss_cli.cli._options import DestOpt, output_for, settings_for
from gptoss_cli.errors import CheckFailed

_STYLE = {"ok": "green", "warn": "yellow", "fail": "red"}


@boundary
def doctor(ctx: typer.Context, dest: DestOpt = None) -> None:
    """Check this machine: Python, packages, torch/CUDA and GPUs, free disk, git, mirror/proxy variables."""
    from gptoss_cli.doctor import run_doctor

    out = output_for(ctx)
    settings = settings_for(ctx, {"fetch.dest": dest})
    report = run_doctor(settings["fetch.dest"])

    def human(console: Console) -> None:
        table = out.table("check", "status", "detail", title="gptoss doctor")
        for c in report.checks:
            table.add_row(escape(c.name), f"[{_STYLE[c.status]}]{c.status}[/]", escape(c.detail))
        console.print(table)
        if report.ok:
            console.print("all required pieces present")  # else the error line says what is missing

    out.result(report, human)
    if not report.ok:
        missing = ", ".join(c.name for c in report.checks if c.status == "fail")
        raise CheckFailed(f"a required piece is missing: {missing}", hint="see the detail column; rerun when fixed")
