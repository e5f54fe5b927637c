"""Standalone commands record their last result in DEST's state (``gptoss status`` reads it), best effort."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gptoss_cli.cli._output import Output


def remember(out: Output, dest: Path, stage: str, result: Any, *, request: Any = None,
             only_known: bool = False) -> None:
    """Record ``result`` as ``stage``'s last result in ``dest``; never fails the command (a read-only DEST, a DEST
    that does not exist: one ``-v`` line). ``only_known``: only in a DEST that fetch or up already made (for
    commands such as dify-register that take no DEST of their own)."""
    from gptoss_cli.lockfile import LOCK_NAME
    from gptoss_cli.up import records
    from gptoss_cli.up.state import record_quietly, state_dir

    dest = Path(dest)
    if not dest.is_dir() or (only_known and not ((dest / LOCK_NAME).is_file() or state_dir(dest).is_dir())):
        return
    try:
        if stage == "fetch":
            rec = records.fetch_record(result)
        elif stage == "verify":
            rec = records.verify_record(result)
        elif stage == "audit":
            rec = records.audit_record(result, request, records.code_commit(dest))
        else:
            rec = records.register_record(result)
    except Exception as exc:  # noqa: BLE001 - the state is a convenience: the command's own result stands
        out.detail(f"gptoss: state not recorded: {type(exc).__name__}: {exc}")
        return
    why = record_quietly(dest, rec)
    if why:
        out.detail(f"gptoss: {why}")
