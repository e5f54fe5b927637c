"""Shared option aliases and the per-invocation state (global --json, --config)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Mapping, Optional

import typer

from gptoss_cli.cli._output import Output
from gptoss_cli.config import Settings, load_settings


@dataclass
class AppState:
    json: bool = False
    config_file: Optional[Path] = None


JsonOpt = Annotated[bool, typer.Option("--json", help="Print exactly one JSON document on stdout.")]
DestOpt = Annotated[
    Optional[Path], typer.Option("--dest", help="Fetch destination (code/, model/, gptoss.lock.json). [default: ./gpt-oss]")
]


def state(ctx: typer.Context) -> AppState:
    root = ctx.find_root()
    if not isinstance(root.obj, AppState):
        root.obj = AppState()
    return root.obj


def output_for(ctx: typer.Context, json_flag: bool = False) -> Output:
    """``--json`` counts whether it was typed before or after the command name."""
    return Output(json_mode=json_flag or state(ctx).json)


def settings_for(ctx: typer.Context, flags: Mapping[str, Any] | None = None) -> Settings:
    """Resolve settings for this invocation (flags given to the command win over env, file and defaults)."""
    return load_settings(flags or {}, config_file=state(ctx).config_file)
