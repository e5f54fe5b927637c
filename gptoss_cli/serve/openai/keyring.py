"""``KeyRing``: who may call ``/v1/*`` — the single ``--api-key`` and the named keys of the keys file.

``authenticate(token)`` answers the caller's ``Identity`` (name, allowed models, limits, policy) or None. Both
checks always run and compare in constant time (``hmac.compare_digest``); a named key is found by its public id,
so no comparison runs against the other keys. The keys file is re-read when it changes (its inode, size or mtime;
looked at no more than once per ``reload_interval`` seconds, on a request): a key revoked with ``gptoss keys
revoke`` is refused from its next request on, without a restart. A keys file that cannot be read at start is an
error (``CouldNotRun``); one that becomes unreadable later fails closed — no named key is accepted until it is
fixed (the single ``--api-key`` still is) — and is reported once in the log.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from gptoss_cli.config import Secret
from gptoss_cli.errors import CouldNotRun, GptossError
from gptoss_cli.keys import SINGLE_KEY_NAME, KeyEntry, parse_key, read_keys

log = logging.getLogger("gptoss.serve")
_DUMMY_SHA = hashlib.sha256(b"gptoss: no such key").hexdigest()
_DUMMY_KEY = b"\x00" * 32


@dataclass(frozen=True)
class Identity:
    """An authenticated caller: what the logs, metrics and journal name, and what limits apply."""

    name: str
    models: tuple[str, ...] = ()  # empty: every served model
    rpm: int | None = None
    tpm: int | None = None
    policy: str | None = None

    @classmethod
    def of(cls, entry: KeyEntry) -> "Identity":
        return cls(entry.name, entry.models, entry.rpm, entry.tpm, entry.policy)


class KeyRing:
    def __init__(self, path: Path | None, single: Secret | None = None, *, reload_interval: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.path = Path(path) if path is not None else None
        self._single = single.reveal().encode("utf-8") if single is not None else None
        self.reload_interval = reload_interval
        self._clock = clock
        self._lock = threading.Lock()
        self._checked = float("-inf")
        self._stamp: tuple[int, int, int] | None = None
        self._by_id: dict[str, KeyEntry] = {}
        self._by_name: dict[str, Identity] = {}
        self.error: str | None = None  # why the keys file is not in use, when it is not
        if self.path is not None:
            self.refresh(force=True)
            if self.error is not None:  # at start, a damaged file is an error (exit 3), not a silent lock-out
                raise CouldNotRun(self.error, hint="fix the keys file, or move it aside and add the keys again")

    @property
    def named(self) -> int:
        return len(self._by_id)

    def authenticate(self, token: str | bytes) -> Identity | None:
        """The caller ``token`` (the Bearer value, as sent) belongs to, or None."""
        self.refresh()
        raw = token if isinstance(token, bytes) else token.encode("utf-8", "surrogateescape")
        single_ok = hmac.compare_digest(raw, self._single if self._single is not None else _DUMMY_KEY)
        key_id = parse_key(raw.decode("latin-1"))
        entry = self._by_id.get(key_id) if key_id is not None else None
        digest = hashlib.sha256(raw).hexdigest()
        named_ok = hmac.compare_digest(digest, entry.sha256 if entry is not None else _DUMMY_SHA)
        if entry is not None and named_ok:
            return self._by_name.get(entry.name) or Identity.of(entry)
        if single_ok and self._single is not None:
            return Identity(SINGLE_KEY_NAME)
        return None

    def identity(self, name: str | None) -> Identity | None:
        """The current identity named ``name`` (None when it is unknown or was revoked meanwhile)."""
        if name == SINGLE_KEY_NAME and self._single is not None:
            return Identity(SINGLE_KEY_NAME)
        return self._by_name.get(name or "")

    def refresh(self, *, force: bool = False) -> None:
        """Re-read the keys file if it changed (at most once per ``reload_interval`` unless ``force``)."""
        if self.path is None:
            return
        now = self._clock()
        if not force and now - self._checked < self.reload_interval:
            return
        with self._lock:
            self._checked = now
            stamp = _stamp(self.path)
            if stamp == self._stamp and not force:
                return
            self._load(stamp)

    def _load(self, stamp: tuple[int, int, int] | None) -> None:
        assert self.path is not None
        try:
            active = read_keys(self.path).active()
        except GptossError as exc:
            if self.error != exc.message:
                log.error("keys file: %s; no named key is accepted until it is fixed", exc.one_line())
            self.error, self._by_id, self._by_name, self._stamp = exc.message, {}, {}, stamp
            return
        self._by_id = {e.id: e for e in active}  # one assignment each: a request sees the old set or the new
        self._by_name = {e.name: Identity.of(e) for e in active}
        self._stamp, self.error = stamp, None
        log.info("keys file %s: %d active keys", self.path, len(active))


def _stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


__all__ = ["Identity", "KeyRing"]
