"""``gptoss config show``."""

from __future__ import annotations

import typer
from rich.console import Console

from gptoss_cli.cli._errors import boundary
from gptoss_cli.cli._options import output_for, settings_for
from gptoss_cli.cli._plain import PlainCommand, PlainGroup
from gptoss_cli.config import FIELDS, mask

app = typer.Typer(help="Show the effective configuration.", no_args_is_help=True, rich_markup_mode=None,
                  cls=PlainGroup)


@app.command("show", cls=PlainCommand)
@boundary
def show(ctx: typer.Context) -> None:
    """Show every effective setting, where it came from (flag, env, file, default); secrets masked."""
    out = output_for(ctx)
    settings = settings_for(ctx)
    rows = [
        {
            "key": spec.key,
            "value": mask(settings[spec.key]),
            "source": settings.source(spec.key),
            "env": list(spec.env_names),
            "secret": spec.secret,
        }
        for spec in FIELDS
    ]
    data = {"files": [str(p) for p in settings.files], "settings": rows}

    def human(console: Console) -> None:
        table = out.table("key", "value", "source", title="effective settings")
        for r in rows:
            value = "" if r["value"] is None else str(r["value"])
            table.add_row(r["key"], value, r["source"])
        console.print(table)
        files = ", ".join(data["files"]) or "none found"
        console.print(f"config files: {files}")

    out.result(data, human)
