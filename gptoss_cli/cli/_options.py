"""Shared options and the per-invocation state.

Every command (and the root) takes the same output options, in either place users type them
(``gptoss --json verify`` and ``gptoss verify --json``):

    --json          one JSON document on stdout (the envelope of ``_output``)
    -q, --quiet     results, warnings and errors only: no progress, no info lines
    -v, --verbose   detail lines too (where settings came from, each file, each step)
    --no-truncate   never shorten table cells, ids or hashes (output that is not a terminal never does)

They are not declared by each command: :class:`GptossGroup` adds them to every command it serves (commands loaded
lazily included), as options whose values go straight into :class:`AppState`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Mapping, Optional

import typer
from typer.core import TyperGroup

from gptoss_cli.cli._click import exceptions

from gptoss_cli.cli._output import NORMAL, QUIET, VERBOSE, Output
from gptoss_cli.config import FIELDS_BY_KEY, Settings, load_settings, mask


@dataclass
class AppState:
    json: bool = False
    config_file: Optional[Path] = None
    quiet: bool = False
    verbose: bool = False
    no_truncate: bool = False
    output: Optional[Output] = None

    @property
    def level(self) -> str:
        return QUIET if self.quiet else VERBOSE if self.verbose else NORMAL


# A command may still declare its own --json (then pass it to ``output_for``); the shared one is added otherwise.
JsonOpt = Annotated[bool, typer.Option("--json", help="Print exactly one JSON document on stdout.")]
DestOpt = Annotated[
    Optional[Path], typer.Option("--dest", help="Fetch destination (code/, model/, gptoss.lock.json). [default: ./gpt-oss]")
]

COMMON_HELP = {
    "json": "Print exactly one JSON document on stdout.",
    "quiet": "Only results, warnings and errors: no progress or info lines.",
    "verbose": "Print detail lines on stderr too.",
    "no_truncate": "Never shorten table cells, ids or hashes (piped output never does).",
}


def state(ctx: Any) -> AppState:
    root = ctx.find_root()
    if not isinstance(root.obj, AppState):
        root.obj = AppState()
    return root.obj


def _remember(ctx: typer.Context, param: typer.CallbackParam, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    st = state(ctx)
    setattr(st, str(param.name), True)
    if st.quiet and st.verbose:
        raise exceptions.UsageError("-q/--quiet and -v/--verbose exclude each other", ctx=ctx)


def _flag(*decls: str) -> Any:
    name = decls[-1].lstrip("-").replace("-", "_")
    return typer.Option(*decls, help=COMMON_HELP[name], expose_value=False, callback=_remember)


@functools.lru_cache(maxsize=1)
def _common_params() -> tuple[Any, ...]:
    """The Click parameters of the output options, built once by Typer itself from a template command and shared
    by every command (a parameter keeps no per-invocation state: values live in the context)."""
    template = typer.Typer(add_completion=False)

    @template.command()
    def _options(
        json: Annotated[bool, _flag("--json")] = False,
        quiet: Annotated[bool, _flag("-q", "--quiet")] = False,
        verbose: Annotated[bool, _flag("-v", "--verbose")] = False,
        no_truncate: Annotated[bool, _flag("--no-truncate")] = False,
    ) -> None:
        pass  # pragma: no cover - never invoked

    return tuple(typer.main.get_command(template).params)


def add_common_options(command: Any) -> Any:
    """Give ``command`` the output options it does not declare itself (idempotent)."""
    if getattr(command, "_gptoss_common", False):
        return command
    taken = {opt for p in command.params for opt in (*p.opts, *p.secondary_opts)}
    command.params.extend(p for p in _common_params() if not taken.intersection(p.opts))
    command._gptoss_common = True
    return command


class GptossGroup(TyperGroup):
    """The root group: common options on every command; usage errors as one ``gptoss: error:`` line."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        add_common_options(self)

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            _add_everywhere(command)
        return command

    def main(self, args: Any = None, prog_name: Optional[str] = None, complete_var: Optional[str] = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        from gptoss_cli.cli._errors import run_main

        def call(argv: list[str]) -> Any:
            return super(GptossGroup, self).main(argv, prog_name, complete_var, standalone_mode=False, **extra)

        return run_main(call, args, standalone_mode, self)


def _add_everywhere(command: Any) -> None:
    add_common_options(command)
    for sub in getattr(command, "commands", {}).values():  # a sub-group such as ``config``
        _add_everywhere(sub)


def output_for(ctx: Any, json_flag: bool = False) -> Output:
    """This invocation's Output (one per run: the error boundary writes the --json envelope through it)."""
    st = state(ctx)
    if st.output is None:
        st.output = Output(json_mode=st.json or json_flag, level=st.level, no_truncate=st.no_truncate,
                           command=" ".join(ctx.command_path.split()[1:]))
    elif json_flag:
        st.output.json_mode = True
    return st.output


def settings_for(ctx: Any, flags: Mapping[str, Any] | None = None) -> Settings:
    """Resolve settings for this invocation (flags given to the command win over env, file and defaults)."""
    settings = load_settings(flags or {}, config_file=state(ctx).config_file)
    out = output_for(ctx)
    if out.verbose:
        from gptoss_cli.lockfile import scrub_userinfo

        out.detail("gptoss: config files: " + (", ".join(str(p) for p in settings.files) or "none"))
        for key, resolved in sorted(settings.values.items()):
            if resolved.source != "default":
                spec = FIELDS_BY_KEY.get(key)
                value = "********" if spec is not None and spec.secret else scrub_userinfo(_shown(resolved.value))
                out.detail(f"gptoss: {key} = {value} ({resolved.source})")
    return settings


def _shown(value: Any) -> str:
    import json

    from gptoss_cli.cli._output import to_jsonable

    plain = to_jsonable(mask(value))
    return plain if isinstance(plain, str) else json.dumps(plain)
