"""Named API keys: the keys file behind ``gptoss keys add|list|revoke`` and the server's key check.

The file is JSON (``<home>/keys.json`` unless ``serve.keys_file`` / ``--keys-file`` names another), written
atomically with mode 0600::

    {"version": 1, "keys": [{"name": "dify", "id": "3f9c0a1b2c4d", "sha256": "<hex>", "created": "...Z",
                             "revoked": null, "models": ["gpt-oss-20b"], "rpm": 60, "tpm": 100000,
                             "policy": "strict"}]}

A key is ``gptoss-<id>-<secret>``: a 12-hex-digit id (public, used to find the entry without comparing against
every key) and 32 random bytes (``secrets.token_urlsafe``). Only the key's SHA-256 is stored — a salt adds nothing
to a 256-bit random secret — and it is compared in constant time (``hmac.compare_digest``). ``add`` returns the key
once; nothing can show it again. ``revoke`` keeps the entry (who had access, until when) with its ``revoked`` time.
The name ``api-key`` is reserved for the single ``--api-key``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import tempfile
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

from gptoss_cli.errors import CouldNotRun, UsageError

KEYS_FILE_NAME = "keys.json"
KEY_PREFIX = "gptoss-"
SINGLE_KEY_NAME = "api-key"  # the name --api-key requests carry in logs, metrics and the journal
_ID_LEN = 12
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_KEY = re.compile(rf"^{KEY_PREFIX}([0-9a-f]{{{_ID_LEN}}})-[A-Za-z0-9_-]{{43,}}$")
_DUMMY = hashlib.sha256(b"gptoss: no such key").hexdigest()


@dataclass(frozen=True)
class KeyEntry:
    """One named key as stored (never the key itself)."""

    name: str
    id: str
    sha256: str
    created: str
    revoked: str | None = None
    models: tuple[str, ...] = ()  # empty: every served model
    rpm: int | None = None  # requests per minute (sliding window); None: no limit
    tpm: int | None = None  # tokens per minute, counted from each request's usage at its end
    policy: str | None = None  # a policy name or path (the policy engine reads it)

    @property
    def active(self) -> bool:
        return self.revoked is None

    def public(self) -> dict[str, Any]:
        """What ``keys list`` shows: everything but the hash."""
        data = asdict(self)
        data.pop("sha256")
        data["models"] = list(self.models)
        return data


@dataclass(frozen=True)
class KeysFile:
    path: Path
    entries: tuple[KeyEntry, ...] = field(default=())

    def active(self) -> tuple[KeyEntry, ...]:
        return tuple(e for e in self.entries if e.active)

    def find(self, key: str) -> KeyEntry | None:
        """The active entry ``key`` belongs to, or None; constant-time in the secret part."""
        key_id = parse_key(key)
        entry = next((e for e in self.active() if e.id == key_id), None) if key_id else None
        digest = hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()
        ok = hmac.compare_digest(digest, entry.sha256 if entry is not None else _DUMMY)
        return entry if ok and entry is not None else None


def parse_key(key: str) -> str | None:
    """The public id of a well-formed key (``gptoss-<id>-<secret>``), else None."""
    match = _KEY.match(key)
    return match.group(1) if match else None


def default_keys_path(home: Path) -> Path:
    return Path(home) / KEYS_FILE_NAME


def check_name(name: str) -> str:
    if not _NAME.match(name or ""):
        raise UsageError(f"invalid key name {name!r}: use 1-64 letters, digits, '.', '_' or '-'")
    if name == SINGLE_KEY_NAME:
        raise UsageError(f"the key name {SINGLE_KEY_NAME!r} is reserved for --api-key")
    return name


def read_keys(path: Path) -> KeysFile:
    """The keys file at ``path`` (an absent file: no keys). Raises ``CouldNotRun`` for a damaged one."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return KeysFile(path)
    except OSError as exc:
        raise CouldNotRun(f"cannot read the keys file {path}: {exc.strerror or exc}") from None
    try:
        data = json.loads(raw)
        entries = tuple(_entry(item) for item in data["keys"])
    except (ValueError, KeyError, TypeError) as exc:
        raise CouldNotRun(f"the keys file {path} is damaged ({type(exc).__name__})",
                          hint="fix it, or move it aside and add the keys again") from None
    return KeysFile(path, entries)


def _entry(item: dict[str, Any]) -> KeyEntry:
    models = item.get("models") or ()
    if isinstance(models, str) or not all(isinstance(m, str) for m in models):
        raise TypeError("models")
    for limit in ("rpm", "tpm"):
        value = item.get(limit)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(limit)
    return KeyEntry(name=str(item["name"]), id=str(item["id"]), sha256=str(item["sha256"]),
                    created=str(item.get("created") or ""), revoked=item.get("revoked"), models=tuple(models),
                    rpm=item.get("rpm"), tpm=item.get("tpm"), policy=item.get("policy"))


def write_keys(keys: KeysFile) -> None:
    """Write atomically (temp file in the same folder, mode 0600, ``os.replace``)."""
    path = keys.path
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"version": 1, "keys": [{**asdict(e), "models": list(e.models)} for e in keys.entries]}
    fd, tmp = tempfile.mkstemp(prefix=".keys-", dir=str(path.parent))
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(doc, f, indent=2)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def add_key(path: Path, name: str, *, models: Iterable[str] = (), rpm: int | None = None, tpm: int | None = None,
            policy: str | None = None) -> tuple[KeyEntry, str]:
    """Create a key named ``name`` (no other active key may have it); returns the entry and the key, once."""
    check_name(name)
    for label, value in (("--rpm", rpm), ("--tpm", tpm)):
        if value is not None and value < 1:
            raise UsageError(f"{label} must be at least 1, got {value}")
    keys = read_keys(path)
    if any(e.name == name for e in keys.active()):
        raise UsageError(f"a key named {name!r} exists already", hint=f"revoke it first: gptoss keys revoke {name}")
    taken = {e.id for e in keys.entries}
    key_id = secrets.token_hex(_ID_LEN // 2)
    while key_id in taken:  # pragma: no cover - 48 random bits
        key_id = secrets.token_hex(_ID_LEN // 2)
    key = f"{KEY_PREFIX}{key_id}-{secrets.token_urlsafe(32)}"
    entry = KeyEntry(name=name, id=key_id, sha256=hashlib.sha256(key.encode()).hexdigest(), created=_now(),
                     models=tuple(dict.fromkeys(m.strip() for m in models if m.strip())), rpm=rpm, tpm=tpm,
                     policy=policy or None)
    write_keys(replace(keys, entries=(*keys.entries, entry)))
    return entry, key


def revoke_key(path: Path, name: str) -> KeyEntry:
    """Mark the active key ``name`` revoked (the server refuses it from its next request on)."""
    keys = read_keys(path)
    entry = next((e for e in keys.active() if e.name == name), None)
    if entry is None:
        raise UsageError(f"no active key named {name!r} in {path}", hint="see `gptoss keys list`")
    revoked = replace(entry, revoked=_now())
    write_keys(replace(keys, entries=tuple(revoked if e is entry else e for e in keys.entries)))
    return revoked


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


__all__ = ["KEY_PREFIX", "SINGLE_KEY_NAME", "KeyEntry", "KeysFile", "add_key", "check_name", "default_keys_path",
           "parse_key", "read_keys", "revoke_key", "write_keys"]
