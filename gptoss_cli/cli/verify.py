"""``gptoss verify``: re-hash the model files against the lock (exit 0 ok, 1 mismatch/missing, 3 unreadable lock)."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Callable, Iterator, Optional

import typer

from gptoss_cli.cli._errors import boundary
from gptoss_cli.cli._options import JsonOpt, output_for, settings_for
from gptoss_cli.cli._output import Output
from gptoss_cli.errors import CheckFailed

if TYPE_CHECKING:
    from rich.console import Console

    from gptoss_cli.verify import FileCheck

_STYLE = {"ok": "green", "mismatch": "red", "missing": "red", "extra": "yellow"}


@contextlib.contextmanager
def byte_progress(out: Output, description: str) -> Iterator[Callable[[int, int], None]]:
    """A rich progress bar by bytes on stderr (hidden when stderr is not a terminal or with --json)."""
    if out.json_mode or not out.err.is_terminal:
        yield lambda done, total: None  # nothing to draw: do not even import rich.progress
        return
    from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn,
                               TransferSpeedColumn)

    progress = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                        TimeRemainingColumn(), console=out.err, transient=True)
    task = progress.add_task(description, total=None)

    def update(done: int, total: int) -> None:
        progress.update(task, completed=done, total=total)

    with progress:
        yield update


def human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{n} B"  # pragma: no cover


@boundary
def verify(
    ctx: typer.Context,
    dest: Annotated[Optional[Path], typer.Argument(help="Fetch destination holding gptoss.lock.json and model/. "
                                                        "(default: ./gpt-oss)", show_default=False)] = None,
    lock: Annotated[Optional[Path], typer.Option("--lock", help="Lock file to check against (default: "
                                                 "DEST/gptoss.lock.json); files are read from DEST/model, or from "
                                                 "model/ next to the lock when DEST is not given.")] = None,
    strict: Annotated[bool, typer.Option("--strict", help="Fail on files present in model/ but not in the lock.")
                      ] = False,
    jobs: Annotated[Optional[int], typer.Option("--jobs", "-j", min=0, help="Hashing threads (0 = one per core).")
                    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Re-hash every file in the lock (parallel, large reads) and report ok / mismatch / missing / extra."""
    from gptoss_cli.lockfile import LOCK_NAME, MODEL_DIRNAME
    from gptoss_cli.verify import verify_lock

    out = output_for(ctx, json_out)
    settings = settings_for(ctx, {"fetch.dest": dest, "verify.jobs": jobs})
    if lock is not None:
        lock_file = lock
        model_dir = (dest if dest is not None else lock.parent) / MODEL_DIRNAME
    else:
        lock_file = Path(settings["fetch.dest"]) / LOCK_NAME
        model_dir = Path(settings["fetch.dest"]) / MODEL_DIRNAME
    with byte_progress(out, "verifying") as progress:
        result = verify_lock(lock_file, model_dir=model_dir, jobs=settings["verify.jobs"], strict=strict,
                             progress=progress)

    def human(console: Console) -> None:
        from rich.table import Table

        rows = [f for f in result.files if f.status != "ok"] if len(result.files) > 40 else list(result.files)
        if rows or result.extra:
            table = Table(title=f"gptoss verify {result.model_dir}")
            for col in ("file", "status", "detail"):
                table.add_column(col)
            for f in rows:
                table.add_row(f.path, f"[{_STYLE[f.status]}]{f.status}[/]", _detail(f))
            for p in result.extra:
                table.add_row(p, "[yellow]extra[/]", "not in the lock")
            console.print(table)
        verdict = "[green]all files match the lock[/]" if result.ok else "[red]verification failed[/]"
        console.print(f"{verdict}: {result.summary()}; {human_size(result.bytes_hashed)} hashed in "
                      f"{result.seconds:.1f}s")

    out.result(result, human)
    if not result.ok:
        raise CheckFailed(f"verify failed for {result.model_dir}: {result.summary()}",
                          hint="rerun `gptoss fetch` to repair (or --lock with the lock you trust)")


def _detail(f: FileCheck) -> str:
    if f.status == "missing":
        return "not found"
    if f.status == "mismatch" and f.actual_sha256 is None:
        return f"size {f.actual_size}, expected {f.expected_size}"
    if f.status == "mismatch":
        return f"sha256 {(f.actual_sha256 or '')[:16]}…, expected {(f.expected_sha256 or '')[:16]}…"
    return human_size(f.expected_size or 0)
