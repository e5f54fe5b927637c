"""Where a deployment stands, kept in DEST: ``DEST/.gptoss/state.json`` (one record per stage, written atomically).

Every command that knows DEST writes the record of its last result here (``gptoss up``, and ``fetch``, ``verify``,
``audit``, ``dify-register`` run alone), so ``gptoss status`` is right whichever way the user got there. A record is
small and holds no secret::

    {"schema_version": 1,
     "stages": {"verify": {"stage": "verify", "ok": true, "exit_code": 0, "at": "2026-12-04T18:40:00Z",
                           "summary": "9 ok", "data": {...}}, ...}}

Writes are read-modify-write under an ``flock`` on ``DEST/.gptoss/state.lock`` (two commands finishing at once
keep both records) and land with ``os.replace``. Reading never writes and never fails: a missing or damaged file
is an empty state. :func:`record_quietly` is the best-effort writer the CLI uses: a read-only DEST never turns a
successful verify into a failure.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Optional

from gptoss_cli.lockfile import atomic_write_text, utc_now

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: no locking
    fcntl = None  # type: ignore[assignment]

STATE_DIRNAME = ".gptoss"
STATE_NAME = "state.json"
SCHEMA_VERSION = 1
STAGES = ("fetch", "verify", "audit", "serve", "register")


def age_seconds(at: str) -> float:
    """Seconds since the UTC time ``at`` (``2026-12-04T18:40:00Z``); infinite when it does not parse."""
    import datetime as _dt

    try:
        when = _dt.datetime.strptime(at, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=_dt.timezone.utc)
    except (TypeError, ValueError):
        return float("inf")
    return (_dt.datetime.now(_dt.timezone.utc) - when).total_seconds()


def state_dir(dest: Path) -> Path:
    return Path(dest) / STATE_DIRNAME


def state_path(dest: Path) -> Path:
    return state_dir(dest) / STATE_NAME


@dataclass(frozen=True)
class StageRecord:
    """The last result of one stage: ``ok`` / ``exit_code``, when (UTC), a one-line summary, and plain data."""

    stage: str
    ok: bool
    exit_code: int
    summary: str
    at: str = field(default_factory=utc_now)
    data: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"stage": self.stage, "ok": self.ok, "exit_code": self.exit_code, "summary": self.summary,
                "at": self.at, "data": dict(self.data)}

    @classmethod
    def from_dict(cls, obj: Any) -> Optional["StageRecord"]:
        if not isinstance(obj, dict):
            return None
        try:
            return cls(stage=str(obj["stage"]), ok=bool(obj["ok"]), exit_code=int(obj["exit_code"]),
                       summary=str(obj.get("summary", "")), at=str(obj.get("at", "")),
                       data=dict(obj.get("data") or {}))
        except (KeyError, TypeError, ValueError):
            return None


@dataclass(frozen=True)
class DeployState:
    """Every stage's last record (missing stages are absent)."""

    path: Path
    stages: Mapping[str, StageRecord] = field(default_factory=dict)

    def get(self, stage: str) -> Optional[StageRecord]:
        return self.stages.get(stage)

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "stages": {k: v.to_dict() for k, v in sorted(self.stages.items())}}


def read_state(dest: Path) -> DeployState:
    """The state in ``dest`` (empty when there is none or it cannot be read: status must always answer)."""
    path = state_path(dest)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return DeployState(path)
    stages = raw.get("stages") if isinstance(raw, dict) else None
    records = {}
    for name, obj in (stages or {}).items() if isinstance(stages, dict) else ():
        rec = StageRecord.from_dict(obj)
        if rec is not None and name == rec.stage:
            records[name] = rec
    return DeployState(path, records)


@contextlib.contextmanager
def _locked(dest: Path) -> Iterator[None]:
    folder = state_dir(dest)
    folder.mkdir(parents=True, exist_ok=True)
    if fcntl is None:  # pragma: no cover
        yield
        return
    fd = os.open(folder / "state.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def record(dest: Path, rec: StageRecord) -> DeployState:
    """Store ``rec`` as its stage's last record (atomically, other stages kept); raises OSError when DEST is not
    writable."""
    if not Path(dest).is_dir():
        raise FileNotFoundError(f"{dest} does not exist")
    with _locked(dest):
        current = read_state(dest)
        stages = {**current.stages, rec.stage: rec}
        doc = {"schema_version": SCHEMA_VERSION, "stages": {k: v.to_dict() for k, v in sorted(stages.items())}}
        atomic_write_text(state_path(dest), json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
    return DeployState(state_path(dest), stages)


def record_quietly(dest: Optional[Path], rec: StageRecord) -> Optional[str]:
    """:func:`record`, best effort: returns why it could not (for a ``-v`` line), or None when stored. A DEST that
    does not exist is left alone (a failed first fetch removes the folders it made)."""
    if dest is None:
        return "no DEST"
    try:
        record(dest, rec)
    except OSError as exc:
        return f"state not recorded in {dest}: {exc.strerror or exc}"
    return None


__all__ = ["STAGES", "STATE_DIRNAME", "DeployState", "StageRecord", "age_seconds", "read_state", "record",
           "record_quietly", "state_dir", "state_path"]
