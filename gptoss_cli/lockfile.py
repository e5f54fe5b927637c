"""``gptoss.lock.json``: what was fetched, from where, and the SHA-256 of every model file.

The lock sits next to the model folder (``DEST/gptoss.lock.json``, files under ``DEST/model/``). File paths in the
lock are POSIX paths relative to that model folder. A lock looks like::

    {
      "code": {"commit": "<40 hex>", "url": "https://github.com/openai/gpt-oss"},
      "created_at": "2025-08-05T12:00:00Z",
      "files": [{"hash_source": "lfs", "path": "config.json", "sha256": "<64 hex>", "size": 1234}, ...],
      "model": {"commit": "<hub commit>", "endpoint": "https://hf-mirror.com", "repo_id": "openai/gpt-oss-20b",
                "source": "hf"},
      "schema_version": 1,
      "tool_version": "0.1.0"
    }

``code`` or ``model`` is ``null`` when that part was never fetched. An optional ``kernels`` object
(``{"repo_id", "revision", "commit", "endpoint"}``) pins the native MXFP4 kernel repo fetched with the weights; its
files are listed in ``files`` under ``kernels/<name>/`` (see ``gptoss_cli/kernels.py``). An optional ``vocab``
object (``{"name", "size", "sha256"}``) records the ``o200k_base.tiktoken`` that ships with gptoss and that vLLM reads
offline (``gptoss_cli/vocab``); ``verify`` re-hashes it too. ``hash_source`` records where the expected hash
came from: ``lfs`` (the endpoint's LFS metadata), ``git-blob`` (hashed locally after the bytes matched the git blob
id the endpoint listed), ``modelscope`` (the ModelScope file API), or ``local`` (hashed where the files were made: the
shipped demo model's lock, whose ``model.source`` is ``local`` too). Keys and paths are sorted so locks diff
cleanly, endpoints and URLs never carry credentials, and the file is written atomically.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from gptoss_cli import __version__
from gptoss_cli.errors import CouldNotRun
from gptoss_cli.redact import public_url, redact_url, scrub_userinfo

SCHEMA_VERSION = 1
LOCK_NAME = "gptoss.lock.json"
MODEL_DIRNAME = "model"
CODE_DIRNAME = "code"
HASH_SOURCES = ("lfs", "git-blob", "modelscope", "local")
SOURCES = ("hf", "modelscope", "local")

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
GIT_COMMIT = re.compile(r"^(?:[0-9a-f]{40}|[0-9a-f]{64})$")  # a full SHA-1 or SHA-256 object id


class LockError(CouldNotRun):
    """The lock file is missing, unreadable or invalid (exit 3)."""


@dataclass(frozen=True)
class LockedFile:
    path: str
    size: int
    sha256: str
    hash_source: str

    def to_dict(self) -> dict[str, Any]:
        return {"hash_source": self.hash_source, "path": self.path, "sha256": self.sha256, "size": self.size}


@dataclass(frozen=True)
class CodePin:
    url: str
    commit: str

    def to_dict(self) -> dict[str, Any]:
        return {"commit": self.commit, "url": self.url}


@dataclass(frozen=True)
class ModelPin:
    source: str
    repo_id: str
    commit: str
    endpoint: str

    def to_dict(self) -> dict[str, Any]:
        return {"commit": self.commit, "endpoint": self.endpoint, "repo_id": self.repo_id, "source": self.source}


@dataclass(frozen=True)
class KernelsPin:
    repo_id: str
    revision: str
    commit: str
    endpoint: str

    def to_dict(self) -> dict[str, Any]:
        return {"commit": self.commit, "endpoint": self.endpoint, "repo_id": self.repo_id, "revision": self.revision}


@dataclass(frozen=True)
class VocabPin:
    name: str
    size: int
    sha256: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "sha256": self.sha256, "size": self.size}


@dataclass(frozen=True)
class Lock:
    code: CodePin | None
    model: ModelPin | None
    files: tuple[LockedFile, ...]
    created_at: str = field(default_factory=lambda: utc_now())
    tool_version: str = __version__
    schema_version: int = SCHEMA_VERSION
    kernels: KernelsPin | None = None
    vocab: VocabPin | None = None

    def file(self, path: str) -> LockedFile | None:
        return next((f for f in self.files if f.path == path), None)

    @property
    def total_size(self) -> int:
        return sum(f.size for f in self.files)

    def to_dict(self) -> dict[str, Any]:
        out = {
            "code": self.code.to_dict() if self.code else None,
            "created_at": self.created_at,
            "files": [f.to_dict() for f in sorted(self.files, key=lambda f: f.path)],
            "model": self.model.to_dict() if self.model else None,
            "schema_version": self.schema_version,
            "tool_version": self.tool_version,
        }
        if self.kernels is not None:  # absent, not null, when never fetched: older locks read back unchanged
            out["kernels"] = self.kernels.to_dict()
        if self.vocab is not None:
            out["vocab"] = self.vocab.to_dict()
        return out


def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def check_relpath(path: str) -> str | None:
    """Why ``path`` is not a safe relative POSIX path inside a folder, or ``None`` when it is."""
    if not isinstance(path, str) or not path:
        return "empty path"
    if "\\" in path:
        return "contains a backslash"
    if "\x00" in path or any(ord(c) < 32 for c in path):
        return "contains a control character"
    if path.startswith("/") or re.match(r"^[A-Za-z]:", path):
        return "is absolute"
    parts = path.split("/")
    if any(p in ("", ".", "..") for p in parts):
        return "contains an empty, '.' or '..' component"
    return None


def lock_path_for(path: Path) -> Path:
    """A lock path from either the lock file itself or the DEST folder that holds it."""
    path = Path(path)
    return path / LOCK_NAME if path.is_dir() and path.name != LOCK_NAME else path


MAX_LOCK_BYTES = 64 * 1024 * 1024  # a lock lists files, not data: anything bigger is not a lock


def _read_regular(path: Path) -> str:
    """The text of ``path`` if it is a regular file; never blocks (a FIFO, a device) and never reads a folder."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise LockError(f"lock file {path} is a directory, not a file",
                            hint="pass --lock with the lock file, or the DEST folder that holds it")
        if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_LOCK_BYTES:
            raise LockError(f"lock file {path} is not a regular file (or is too big to be a lock)")
        with os.fdopen(fd, "rb", closefd=False) as fh:
            return fh.read().decode("utf-8")
    finally:
        os.close(fd)


def read_lock(path: Path) -> Lock:
    """Read and strictly validate a lock (``path`` may be the file or its DEST folder); LockError (exit 3) if not."""
    lock_file = lock_path_for(path)
    try:
        text = _read_regular(lock_file)
    except FileNotFoundError:
        raise LockError(f"lock file {lock_file} not found", hint="run `gptoss fetch` first or pass --lock") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise LockError(f"cannot read lock file {lock_file}: {exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise LockError(f"lock file {lock_file} is not valid JSON: {exc}") from None
    except RecursionError:
        raise LockError(f"lock file {lock_file} is not valid JSON: nested too deeply") from None
    try:
        return lock_from_dict(data)
    except ValueError as exc:
        raise LockError(f"lock file {lock_file} is invalid: {exc}") from None


def write_lock(path: Path, lock: Lock) -> Path:
    """Write ``lock`` atomically (temp file in the same folder, fsync, rename); returns the lock path."""
    lock_file = lock_path_for(path)
    lock_from_dict(lock.to_dict())  # never write what we would refuse to read
    text = json.dumps(lock.to_dict(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    atomic_write_text(lock_file, text)
    return lock_file


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to a temp file in the same folder (umask-respecting mode), fsync it, rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{os.urandom(6).hex()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


# -- validation ------------------------------------------------------------------------------------------------------


def _req(obj: Mapping[str, Any], key: str, kind: type, where: str) -> Any:
    if key not in obj:
        raise ValueError(f"{where}: missing key '{key}'")
    value = obj[key]
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ValueError(f"{where}.{key}: expected an integer")
    if not isinstance(value, kind):
        raise ValueError(f"{where}.{key}: expected {kind.__name__}")
    if kind is str and not value:
        raise ValueError(f"{where}.{key}: must not be empty")
    return value


def _no_extra(obj: Mapping[str, Any], allowed: set[str], where: str) -> None:
    extra = sorted(set(obj) - allowed)
    if extra:
        raise ValueError(f"{where}: unknown key(s) {', '.join(extra)}")


def _code_from(obj: Any) -> CodePin | None:
    if obj is None:
        return None
    if not isinstance(obj, dict):
        raise ValueError("code: expected an object or null")
    _no_extra(obj, {"url", "commit"}, "code")
    commit = _req(obj, "commit", str, "code")
    if not GIT_COMMIT.match(commit):
        raise ValueError("code.commit: expected a full git commit hash")
    return CodePin(url=_req(obj, "url", str, "code"), commit=commit)


def _model_from(obj: Any) -> ModelPin | None:
    if obj is None:
        return None
    if not isinstance(obj, dict):
        raise ValueError("model: expected an object or null")
    _no_extra(obj, {"source", "repo_id", "commit", "endpoint"}, "model")
    source = _req(obj, "source", str, "model")
    if source not in SOURCES:
        raise ValueError(f"model.source: expected one of {', '.join(SOURCES)}")
    endpoint = _req(obj, "endpoint", str, "model")
    if public_url(endpoint) != endpoint.rstrip("/"):
        raise ValueError("model.endpoint: must not carry credentials, query or fragment")
    return ModelPin(source=source, repo_id=_req(obj, "repo_id", str, "model"),
                    commit=_req(obj, "commit", str, "model"), endpoint=endpoint)


def _kernels_from(obj: Any) -> KernelsPin | None:
    if obj is None:
        return None
    if not isinstance(obj, dict):
        raise ValueError("kernels: expected an object or null")
    _no_extra(obj, {"repo_id", "revision", "commit", "endpoint"}, "kernels")
    endpoint = _req(obj, "endpoint", str, "kernels")
    if public_url(endpoint) != endpoint.rstrip("/"):
        raise ValueError("kernels.endpoint: must not carry credentials, query or fragment")
    commit = _req(obj, "commit", str, "kernels")
    if not GIT_COMMIT.match(commit):
        raise ValueError("kernels.commit: expected a full commit hash")
    return KernelsPin(repo_id=_req(obj, "repo_id", str, "kernels"), revision=_req(obj, "revision", str, "kernels"),
                      commit=commit, endpoint=endpoint)


def _vocab_from(obj: Any) -> VocabPin | None:
    if obj is None:
        return None
    if not isinstance(obj, dict):
        raise ValueError("vocab: expected an object or null")
    _no_extra(obj, {"name", "size", "sha256"}, "vocab")
    name = _req(obj, "name", str, "vocab")
    if check_relpath(name) or "/" in name:
        raise ValueError("vocab.name: expected a plain file name")
    sha = _req(obj, "sha256", str, "vocab")
    if not _SHA256.match(sha):
        raise ValueError("vocab.sha256: expected 64 lowercase hex digits")
    return VocabPin(name=name, size=_req(obj, "size", int, "vocab"), sha256=sha)


def _file_from(obj: Any, i: int) -> LockedFile:
    where = f"files[{i}]"
    if not isinstance(obj, dict):
        raise ValueError(f"{where}: expected an object")
    _no_extra(obj, {"path", "size", "sha256", "hash_source"}, where)
    path = _req(obj, "path", str, where)
    why = check_relpath(path)
    if why:
        raise ValueError(f"{where}.path {path!r}: {why}")
    size = _req(obj, "size", int, where)
    if size < 0:
        raise ValueError(f"{where}.size: must be >= 0")
    sha = _req(obj, "sha256", str, where)
    if not _SHA256.match(sha):
        raise ValueError(f"{where}.sha256: expected 64 lowercase hex digits")
    source = _req(obj, "hash_source", str, where)
    if source not in HASH_SOURCES:
        raise ValueError(f"{where}.hash_source: expected one of {', '.join(HASH_SOURCES)}")
    return LockedFile(path=path, size=size, sha256=sha, hash_source=source)


def lock_from_dict(data: Any) -> Lock:
    """Build a Lock from parsed JSON, raising ValueError with the offending key on anything unexpected."""
    if not isinstance(data, dict):
        raise ValueError("expected a JSON object at the top level")
    version = _req(data, "schema_version", int, "lock")
    if version != SCHEMA_VERSION:
        raise ValueError(f"schema_version {version} is not supported (this gptoss reads {SCHEMA_VERSION})")
    _no_extra(data, {"schema_version", "tool_version", "code", "model", "files", "created_at", "kernels",
                     "vocab"}, "lock")
    files_raw = _req(data, "files", list, "lock")
    files = tuple(_file_from(f, i) for i, f in enumerate(files_raw))
    seen: set[str] = set()
    for f in files:
        if f.path in seen:
            raise ValueError(f"files: duplicate path {f.path!r}")
        seen.add(f.path)
    if "code" not in data or "model" not in data:
        raise ValueError("lock: missing key 'code' or 'model' (use null when absent)")
    model = _model_from(data["model"])
    if files and model is None:
        raise ValueError("files listed but model is null")
    return Lock(
        code=_code_from(data["code"]),
        model=model,
        files=tuple(sorted(files, key=lambda f: f.path)),
        created_at=_req(data, "created_at", str, "lock"),
        tool_version=_req(data, "tool_version", str, "lock"),
        schema_version=version,
        kernels=_kernels_from(data.get("kernels")),
        vocab=_vocab_from(data.get("vocab")),
    )


__all__ = [
    "CODE_DIRNAME",
    "GIT_COMMIT",
    "HASH_SOURCES",
    "LOCK_NAME",
    "MODEL_DIRNAME",
    "SCHEMA_VERSION",
    "CodePin",
    "KernelsPin",
    "Lock",
    "LockError",
    "LockedFile",
    "ModelPin",
    "VocabPin",
    "atomic_write_text",
    "check_relpath",
    "lock_from_dict",
    "lock_path_for",
    "public_url",
    "read_lock",
    "redact_url",
    "scrub_userinfo",
    "utc_now",
    "write_lock",
]
