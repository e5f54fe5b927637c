"""The ``gptoss`` command line: a thin Typer layer over the core library.

This module only wires commands together; each command lives in its own module and every command body runs inside
the one error boundary (``_errors.boundary``). Nothing heavy is imported here: ``gptoss --help`` must stay fast.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from gptoss_cli import __version__
from gptoss_cli.cli import config_cmd, doctor
from gptoss_cli.cli import fetch
from gptoss_cli.cli import verify
from gptoss_cli.cli import audit
from gptoss_cli.cli import dify
from gptoss_cli.cli import serve
from gptoss_cli.cli._errors import report
from gptoss_cli.cli._options import GptossGroup, state

app = typer.Typer(
    name="gptoss",
    help="Private gpt-oss for Dify: fetch, verify, audit, serve and register — offline once the weights are in.",
    no_args_is_help=True,
    cls=GptossGroup,  # -q/-v/--json/--no-truncate on every command; one-line usage errors
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help: rich help panels import markdown-it and double start-up time
    add_completion=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version_callback(value: bool) -> None:
    if not value:
        return
    if "--json" in sys.argv[1:]:
        sys.stdout.write(json.dumps({"name": "gptoss-cli", "version": __version__}) + "\n")
    else:
        sys.stdout.write(f"gptoss {__version__}\n")
    raise typer.Exit(0)


@app.callback()
def _root(
    ctx: typer.Context,
    config: Annotated[
        Optional[Path], typer.Option("--config", help="Use this config file instead of gptoss.toml / XDG config.")
    ] = None,
    version: Annotated[
        bool,
        typer.Option("--version", "-V", callback=_version_callback, is_eager=True, help="Show the version and exit."),
    ] = False,
) -> None:
    """Private gpt-oss for Dify: fetch, verify, audit, serve and register — offline once the weights are in."""
    state(ctx).config_file = config  # --json, -q, -v, --no-truncate: recorded by GptossGroup's options


app.command("doctor")(doctor.doctor)
app.command("fetch")(fetch.fetch)
app.command("verify")(verify.verify)
app.command("serve")(serve.serve)
app.command("audit")(audit.audit)
app.command("dify-register")(dify.dify_register)
config_app = typer.Typer(help="Show the effective configuration.", no_args_is_help=True, rich_markup_mode=None)
config_app.command("show")(config_cmd.show)
app.add_typer(config_app, name="config")


def main() -> None:
    """Console-script entry point."""
    try:
        app(prog_name="gptoss")
    except KeyboardInterrupt as exc:  # pragma: no cover - outside a command body (argument parsing)
        sys.exit(report(exc))


__all__ = ["app", "main"]
