"""``gptoss service unit``: print (or ``--install``) a hardened systemd unit for ``gptoss serve``."""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, List, Optional

import typer
from rich.console import Console

from gptoss_cli.cli._errors import boundary
from gptoss_cli.cli._options import DestOpt, output_for, settings_for
from gptoss_cli.cli._plain import PlainCommand, PlainGroup
from gptoss_cli.errors import UsageError

_Opt = typer.Option

app = typer.Typer(help="Run gptoss serve as a system service.", no_args_is_help=True, rich_markup_mode=None,
                  cls=PlainGroup)


@dataclass(frozen=True)
class UnitResult:
    name: str
    unit: str
    path: Optional[Path]
    env_file: Path
    env_file_exists: bool


def _executable(given: Optional[Path]) -> Path:
    if given is not None:
        return given.absolute()
    beside = Path(sys.executable).parent / "gptoss"  # the console script of this environment
    found = beside if beside.is_file() else shutil.which("gptoss")
    if not found:
        raise UsageError("cannot find the gptoss executable: pass --executable /path/to/venv/bin/gptoss")
    return Path(found).absolute()


@app.command("unit", cls=PlainCommand)
@boundary
def unit(
    ctx: typer.Context,
    dest: DestOpt = None,
    name: Annotated[str, _Opt("--name", help="Unit name (NAME.service; state in /var/lib/NAME).")] = "gptoss",
    user: Annotated[str, _Opt("--user", help="Unprivileged user the server runs as (must exist).")] = "gptoss",
    host: Annotated[Optional[str], _Opt("--host", help="Address to listen on. (default: serve.host, 127.0.0.1)",
                                        show_default=False)] = None,
    port: Annotated[Optional[int], _Opt("--port", min=1, max=65535, help="Port. (default: serve.port, 8000)",
                                        show_default=False)] = None,
    env_file: Annotated[Path, _Opt("--env-file", help="EnvironmentFile holding GPTOSS_API_KEY=... (root, 0600).")
                        ] = Path("/etc/gptoss/gptoss.env"),
    executable: Annotated[Optional[Path], _Opt("--executable", help="The gptoss to run (default: this "
                                               "environment's).", show_default=False)] = None,
    serve_arg: Annotated[Optional[List[str]], _Opt("--serve-arg", help="One more `gptoss serve` argument, e.g. "
                                                   "--serve-arg=--device --serve-arg=cuda (repeatable).")] = None,
    install: Annotated[bool, _Opt("--install", help="Write the unit to UNIT_DIR/NAME.service instead of printing "
                                  "it.")] = False,
    unit_dir: Annotated[Path, _Opt("--unit-dir", help="Where --install writes.")] = Path("/etc/systemd/system"),
) -> None:
    """Print a systemd unit for gptoss serve: restart on failure, key from a file, hardened, DEST read-only."""
    from gptoss_cli.service import UnitSpec, install_unit, render_unit

    out = output_for(ctx)
    settings = settings_for(ctx, {"fetch.dest": dest, "serve.host": host, "serve.port": port})
    spec = UnitSpec(executable=_executable(executable), dest=Path(settings["fetch.dest"]).absolute(), name=name,
                    user=user, host=str(settings["serve.host"]), port=int(settings["serve.port"]),
                    env_file=env_file, serve_args=tuple(serve_arg or ()))
    text = render_unit(spec)
    path = install_unit(text, unit_dir / f"{name}.service") if install else None
    result = UnitResult(name, text, path, env_file, env_file.exists())
    if path is not None:
        out.info(f"gptoss: wrote {path}; next: systemctl daemon-reload && systemctl enable --now {name}")
    if not result.env_file_exists:
        out.warn(f"{env_file} does not exist yet: create it (root, mode 0600) with GPTOSS_API_KEY=<key>; the "
                 "unit does not start without it")

    def human(console: Console) -> None:
        if path is None:
            sys.stdout.write(text)
            sys.stdout.flush()

    out.result(result, human)
