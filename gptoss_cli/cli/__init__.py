"""The ``gptoss`` command line: a thin Typer layer over the core library.

This module only wires commands together; each command lives in its own module (listed in ``COMMANDS``, imported
when used, see ``_lazy``) and every command body runs inside the one error boundary (``_errors.boundary``). Nothing
heavy is imported here: ``gptoss --help`` must stay fast, and ``gptoss verify`` imports only what verify needs.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from gptoss_cli import __version__
from gptoss_cli.cli._complete import InstallCompletionOpt, ShowCompletionOpt
from gptoss_cli.cli._errors import report
from gptoss_cli.cli._lazy import LazyGroup
from gptoss_cli.cli._options import GptossGroup, state

# Every command, in the order --help lists them: name -> "module:function" (or "module:typer_app" for a group).
# A command's module is imported only when that command runs, completes or shows its help.
COMMANDS: dict[str, str] = {
    "up": "gptoss_cli.cli.up:up",
    "status": "gptoss_cli.cli.status:status",
    "stop": "gptoss_cli.cli.status:stop",
    "logs": "gptoss_cli.cli.status:logs",
    "doctor": "gptoss_cli.cli.doctor:doctor",
    "fetch": "gptoss_cli.cli.fetch:fetch",
    "verify": "gptoss_cli.cli.verify:verify",
    "serve": "gptoss_cli.cli.serve:serve",
    "service": "gptoss_cli.cli.service:app",
    "audit": "gptoss_cli.cli.audit:audit",
    "bundle": "gptoss_cli.cli.bundle:app",
    "dify-register": "gptoss_cli.cli.dify:dify_register",
    "keys": "gptoss_cli.cli.keys:app",
    "journal": "gptoss_cli.cli.journal:app",
    "config": "gptoss_cli.cli.config_cmd:app",
}


class _Commands(GptossGroup, LazyGroup):
    """-q/-v/--json/--no-truncate on every command and one-line usage errors (GptossGroup), over commands that are
    imported and built only when used (LazyGroup)."""

    lazy_commands = COMMANDS


app = typer.Typer(
    name="gptoss",
    cls=_Commands,
    help="Private gpt-oss for Dify: fetch, verify, audit, serve and register — offline once the weights are in.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help: rich help panels import markdown-it and double start-up time
    add_completion=False,  # ours below: --show-completion takes the shell by name
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
    install_completion: InstallCompletionOpt = False,
    show_completion: ShowCompletionOpt = None,
) -> None:
    """Private gpt-oss for Dify: fetch, verify, audit, serve and register — offline once the weights are in."""
    state(ctx).config_file = config  # --json, -q, -v, --no-truncate: recorded by GptossGroup's options


def main() -> None:
    """Console-script entry point."""
    try:
        app(prog_name="gptoss")
    except KeyboardInterrupt as exc:  # pragma: no cover - outside a command body (argument parsing)
        sys.exit(report(exc))


__all__ = ["COMMANDS", "app", "main"]
