"""``gptoss verify``: re-hash the model files against the lock (exit 0 ok, 1 mismatch/missing, 3 unreadable lock)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from gptoss_cli.cli._errors import boundary
from gptoss_cli.cli._options import output_for, settings_for
from gptoss_cli.cli._output import Output
from gptoss_cli.cli._progress import byte_progress, human_size
from gptoss_cli.cli._state import remember
from gptoss_cli.errors import CheckFailed

if TYPE_CHECKING:
    from rich.console import Console

    from gptoss_cli.verify import FileCheck, VerifyResult

_STYLE = {"ok": "green", "mismatch": "red", "missing": "red", "extra": "yellow"}


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
) -> None:
    """Re-hash every file in the lock (parallel, large reads) and report ok / mismatch / missing / extra."""
    from gptoss_cli.lockfile import LOCK_NAME, MODEL_DIRNAME
    from gptoss_cli.verify import verify_lock

    out = output_for(ctx)
    settings = settings_for(ctx, {"fetch.dest": dest, "verify.jobs": jobs})
    if lock is not None:
        lock_file = lock
        model_dir = (dest if dest is not None else lock.parent) / MODEL_DIRNAME
    else:
        lock_file = Path(settings["fetch.dest"]) / LOCK_NAME
        model_dir = Path(settings["fetch.dest"]) / MODEL_DIRNAME
    out.detail(f"gptoss: checking {model_dir} against {lock_file}")
    with byte_progress(out, "verifying") as progress:
        result = verify_lock(lock_file, model_dir=model_dir, jobs=settings["verify.jobs"], strict=strict,
                             progress=progress)

    if lock_file.name == LOCK_NAME and model_dir == lock_file.parent / MODEL_DIRNAME:  # DEST's own lock
        remember(out, lock_file.parent, "verify", result)

    def human(console: Console) -> None:
        from rich.table import Table

        rows = [f for f in result.files if f.status != "ok"] if len(result.files) > 40 else list(result.files)
        if rows or result.extra:
            table = out.table("file", "status", "detail", title=f"gptoss verify {result.model_dir}")
            for f in rows:
                table.add_row(f.path, f"[{_STYLE[f.status]}]{f.status}[/]", _detail(f, out))
            for p in result.extra:
                table.add_row(p, "[yellow]extra[/]", "not in the lock")
            console.print(table)
        verdict = "[green]all files match the lock[/]" if result.ok else "[red]verification failed[/]"
        console.print(f"{verdict}: {result.summary()}; {human_size(result.bytes_hashed)} hashed in "
                      f"{result.seconds:.1f}s")

    if out.json_mode or out.out_is_terminal:
        out.result(result, human)
    else:  # piped (CI logs, scripts): plain aligned columns, whole names and hashes, and no rich to import
        _plain(result, out)
    if not result.ok:
        raise CheckFailed(f"verify failed for {result.model_dir}: {result.summary()}",
                          hint="rerun `gptoss fetch` to repair (or --lock with the lock you trust)")


def _plain(result: VerifyResult, out: Output) -> None:
    import sys

    rows = [(f.path, f.status, _detail(f, out)) for f in result.files if f.status != "ok" or len(result.files) <= 40]
    rows += [(p, "extra", "not in the lock") for p in result.extra]
    lines = []
    if rows:
        rows.insert(0, ("file", "status", "detail"))
        width = [max(len(r[i]) for r in rows) for i in range(2)]
        lines = [f"{a:<{width[0]}}  {b:<{width[1]}}  {c}".rstrip() for a, b, c in rows]
    verdict = "all files match the lock" if result.ok else "verification failed"
    lines.append(f"{verdict}: {result.summary()}; {human_size(result.bytes_hashed)} hashed in {result.seconds:.1f}s")
    sys.stdout.write("\n".join(lines) + "\n")
    sys.stdout.flush()


def _detail(f: FileCheck, out: Output) -> str:
    if f.status == "missing":
        return "not found"
    if f.status == "mismatch" and f.actual_sha256 is None:
        return f"size {f.actual_size}, expected {f.expected_size}"
    if f.status == "mismatch":
        return f"sha256 {out.short(f.actual_sha256 or '', 16)}, expected {out.short(f.expected_sha256 or '', 16)}"
    return human_size(f.expected_size or 0)
