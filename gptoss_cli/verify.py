"""Re-hash the model files listed in a lock, in parallel, and report ok / mismatch / missing / extra.

The core entry point is :func:`verify_lock`; ``gptoss verify`` and ``gptoss serve`` (before loading weights) both
call it. Hashing runs on a thread pool: ``hashlib`` releases the GIL while it hashes, so N threads use N cores.
Each worker reads with ``readinto`` into one reusable 1 MiB buffer (it stays in L2 cache; measured as fast as
4-8 MiB reads and as ``openssl dgst``), so memory stays flat and copies stay few.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from gptoss_cli.dest import inside, reading
from gptoss_cli.errors import UsageError
from gptoss_cli.lockfile import LOCK_NAME, MODEL_DIRNAME, Lock, LockedFile, lock_path_for, read_lock

READ_SIZE = 1024 * 1024
MAX_JOBS = 256  # hashing threads; beyond the cores there are, more only costs memory

ProgressFn = Callable[[int, int], None]
"""``progress(done_bytes, total_bytes)``; called from worker threads, serialised by a lock, cumulative."""


class Stopped(Exception):
    """Raised by :meth:`ByteCounter.add` after :meth:`ByteCounter.stop`: the worker reading bytes stops now."""


class ByteCounter:
    """Thread-safe cumulative byte counter that forwards ``(done, total)`` to an optional callback.

    It is also how long reads are interrupted: after ``stop()`` (the caller got Ctrl-C), the next ``add`` from any
    worker raises :class:`Stopped`, so a thread hashing a multi-GB file gives up within one read.
    """

    def __init__(self, total: int, callback: Optional[ProgressFn] = None) -> None:
        self.total = total
        self.done = 0
        self._callback = callback
        self._lock = threading.Lock()
        self._stopped = threading.Event()

    def stop(self) -> None:
        self._stopped.set()

    def add(self, n: int) -> None:
        """Count ``n`` more bytes (negative when a download restarts and its bytes no longer count)."""
        if self._stopped.is_set():
            raise Stopped()
        if n == 0:
            return
        with self._lock:
            self.done += n
            if self._callback is not None:
                self._callback(self.done, self.total)


def git_blob_sha1(size: int) -> "hashlib._Hash":
    """A sha1 primed with git's blob header; feed it the content to get the git blob id."""
    h = hashlib.sha1()
    h.update(b"blob %d\x00" % size)
    return h


def hash_file(
    path: Path,
    *,
    on_bytes: Optional[Callable[[int], None]] = None,
    git_blob: bool = False,
    buffer: Optional[bytearray] = None,
    limit: Optional[int] = None,
    sink: Optional[Callable[[memoryview], Any]] = None,
) -> tuple[str, Optional[str], int]:
    """SHA-256 of ``path`` (first ``limit`` bytes if given): ``(sha256_hex, git_blob_id_or_None, bytes_read)``.

    ``git_blob`` also computes the git blob id of the whole file. ``on_bytes(n)`` is called after each read.
    ``sink(chunk)`` receives every chunk too (e.g. a file's ``write``: copy and hash in one read pass).
    """
    buf = buffer if buffer is not None else bytearray(READ_SIZE)
    view = memoryview(buf)
    sha = hashlib.sha256()
    git = None
    read = 0
    with open(path, "rb", buffering=0) as fh:
        if git_blob:
            git = git_blob_sha1(os.fstat(fh.fileno()).st_size)
        if hasattr(os, "posix_fadvise"):
            try:
                os.posix_fadvise(fh.fileno(), 0, 0, os.POSIX_FADV_SEQUENTIAL)
            except OSError:  # pragma: no cover - some filesystems refuse the hint
                pass
        while True:
            want = len(buf) if limit is None else min(len(buf), limit - read)
            if want <= 0:
                break
            n = fh.readinto(view[:want])
            if not n:
                break
            chunk = view[:n]
            sha.update(chunk)
            if git is not None:
                git.update(chunk)
            if sink is not None:
                sink(chunk)
            read += n
            if on_bytes is not None:
                on_bytes(n)
    return sha.hexdigest(), (git.hexdigest() if git is not None else None), read


@dataclass(frozen=True)
class FileCheck:
    """One lock entry checked against the disk. ``status``: ok, mismatch, missing (or extra, not in the lock)."""

    path: str
    status: str
    expected_size: Optional[int]
    actual_size: Optional[int]
    expected_sha256: Optional[str]
    actual_sha256: Optional[str]


@dataclass(frozen=True)
class VerifyResult:
    """The outcome of :func:`verify_lock`; ``ok`` is False on any mismatch or missing file (or extra, if strict)."""

    lock_path: Path
    model_dir: Path
    files: tuple[FileCheck, ...]
    extra: tuple[str, ...]
    strict: bool
    bytes_hashed: int
    seconds: float
    vocab: Optional[FileCheck] = None  # the shipped o200k_base.tiktoken the lock records (not a model file)

    def _count(self, status: str) -> int:
        return sum(1 for f in self.files if f.status == status)

    @property
    def mismatched(self) -> tuple[FileCheck, ...]:
        return tuple(f for f in self.files if f.status == "mismatch")

    @property
    def missing(self) -> tuple[FileCheck, ...]:
        return tuple(f for f in self.files if f.status == "missing")

    @property
    def ok(self) -> bool:
        vocab_ok = self.vocab is None or self.vocab.status == "ok"
        return not self.mismatched and not self.missing and not (self.strict and self.extra) and vocab_ok

    def summary(self) -> str:
        parts = [f"{self._count('ok')} ok", f"{len(self.mismatched)} mismatch", f"{len(self.missing)} missing"]
        parts.append(f"{len(self.extra)} extra" + (" (strict)" if self.strict and self.extra else ""))
        if self.vocab is not None and self.vocab.status != "ok":
            parts.append(f"shipped vocabulary {self.vocab.path}: {self.vocab.status}")
        return ", ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        extra = [
            {"path": p, "status": "extra", "expected_size": None, "actual_size": None, "expected_sha256": None,
             "actual_sha256": None}
            for p in self.extra
        ]
        return {
            "ok": self.ok,
            "lock": str(self.lock_path),
            "model_dir": str(self.model_dir),
            "strict": self.strict,
            "counts": {"ok": self._count("ok"), "mismatch": len(self.mismatched), "missing": len(self.missing),
                       "extra": len(self.extra)},
            "bytes_hashed": self.bytes_hashed,
            "seconds": round(self.seconds, 3),
            "files": [f.__dict__ for f in self.files] + extra,
            **({"vocab": self.vocab.__dict__} if self.vocab is not None else {}),
        }


def default_jobs() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def _check_one(entry: LockedFile, root: Path, counter: ByteCounter, buffers: threading.local) -> FileCheck:
    path = root / entry.path
    try:
        size = path.stat().st_size if path.is_file() else None
    except OSError:
        size = None
    if size is None:
        return FileCheck(entry.path, "missing", entry.size, None, entry.sha256, None)
    if size != entry.size:
        return FileCheck(entry.path, "mismatch", entry.size, size, entry.sha256, None)
    buf = getattr(buffers, "buf", None)
    if buf is None:
        buf = buffers.buf = bytearray(READ_SIZE)
    try:
        digest, _, read = hash_file(path, on_bytes=counter.add, buffer=buf)
    except OSError:
        return FileCheck(entry.path, "missing", entry.size, size, entry.sha256, None)
    counter.add(entry.size - read)  # a file that shrank while being read still completes the bar
    status = "ok" if digest == entry.sha256 and read == entry.size else "mismatch"
    return FileCheck(entry.path, status, entry.size, read, entry.sha256, digest)


def find_extra(model_dir: Path, listed: set[str]) -> tuple[str, ...]:
    """Files under ``model_dir`` that the lock does not list (POSIX relative paths, sorted)."""
    extra = []
    if not model_dir.is_dir():
        return ()
    for dirpath, dirnames, filenames in os.walk(model_dir):
        dirnames.sort()
        rel_dir = os.path.relpath(dirpath, model_dir)
        for name in filenames:
            rel = name if rel_dir == "." else f"{rel_dir}/{name}".replace(os.sep, "/")
            if rel not in listed:
                extra.append(rel)
    return tuple(sorted(extra))


def _check_jobs(jobs: int) -> None:
    if not 0 <= jobs <= MAX_JOBS:
        raise UsageError(f"--jobs must be between 0 (one per core) and {MAX_JOBS}, not {jobs}")


def _check_vocab(pin: Any) -> FileCheck:
    """The shipped vocabulary (``gptoss_cli/vocab``) against the lock's ``vocab`` entry."""
    from gptoss_cli import vocab

    path = vocab.SHIPPED / pin.name
    try:
        size = path.stat().st_size
    except OSError:
        return FileCheck(f"gptoss_cli/vocab/{pin.name}", "missing", pin.size, None, pin.sha256, None)
    sha = vocab.sha256_of(path)
    status = "ok" if sha == pin.sha256 and size == pin.size else "mismatch"
    return FileCheck(f"gptoss_cli/vocab/{pin.name}", status, pin.size, size, pin.sha256, sha)


def verify_files(
    lock: Lock,
    model_dir: Path,
    *,
    lock_path: Path,
    jobs: int = 0,
    strict: bool = False,
    progress: Optional[ProgressFn] = None,
) -> VerifyResult:
    """Verify an already-parsed ``lock`` against ``model_dir`` (see :func:`verify_lock`)."""
    started = time.perf_counter()
    _check_jobs(jobs)
    model_dir = Path(model_dir)
    inside(model_dir.parent, model_dir)  # the one symlink rule: nothing vouched for outside DEST
    for entry in lock.files:
        inside(model_dir.parent, model_dir / entry.path)
    sizes = {}
    for entry in lock.files:
        try:
            sizes[entry.path] = (model_dir / entry.path).stat().st_size
        except OSError:
            sizes[entry.path] = None
    todo = sorted(lock.files, key=lambda e: -e.size)  # biggest first keeps all workers busy to the end
    total = sum(e.size for e in todo if sizes[e.path] == e.size)
    counter = ByteCounter(total, progress)
    workers = min(jobs or default_jobs(), max(1, len(todo)))
    buffers = threading.local()
    if workers == 1:
        checks = [_check_one(e, model_dir, counter, buffers) for e in todo]
    else:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="gptoss-verify") as pool:
            try:
                checks = list(pool.map(lambda e: _check_one(e, model_dir, counter, buffers), todo))
            except BaseException:  # Ctrl-C: map() cancels queued files; running ones stop at their next read
                counter.stop()
                raise
    extra = find_extra(model_dir, {e.path for e in lock.files})
    return VerifyResult(
        lock_path=Path(lock_path),
        model_dir=model_dir,
        files=tuple(sorted(checks, key=lambda c: c.path)),
        extra=extra,
        strict=strict,
        bytes_hashed=counter.done,
        seconds=time.perf_counter() - started,
        vocab=_check_vocab(lock.vocab) if lock.vocab is not None else None,
    )


def verify_lock(
    lock_path_or_dest: Path,
    *,
    model_dir: Optional[Path] = None,
    jobs: int = 0,
    strict: bool = False,
    progress: Optional[ProgressFn] = None,
) -> VerifyResult:
    """Re-hash every file a lock lists and compare size and SHA-256.

    Args:
        lock_path_or_dest: the lock file, or the DEST folder holding ``gptoss.lock.json``.
        model_dir: folder the lock's paths are relative to; default ``<lock's folder>/model``.
        jobs: hashing threads; 0 means one per available core.
        strict: count files present in ``model_dir`` but absent from the lock as failures.
        progress: ``progress(done_bytes, total_bytes)``, called from worker threads (serialised).

    Returns:
        A frozen :class:`VerifyResult`; ``result.ok`` says whether everything matched. Mismatches are results, not
        exceptions: the caller decides (``gptoss verify`` exits 1, ``serve`` refuses to load).

    Raises:
        LockError: (exit 3) the lock is missing, unreadable or invalid.
        UsageError: (exit 2) ``jobs`` is out of range.
        DestBusy: (exit 3) a ``gptoss fetch`` is writing the folder that holds ``model_dir``.
        IntegrityError: (exit 3) ``model_dir`` or a listed file is a symlink leading out of that folder.
    """
    _check_jobs(jobs)
    lock_file = lock_path_for(Path(lock_path_or_dest))
    root = Path(model_dir) if model_dir is not None else lock_file.parent / MODEL_DIRNAME
    with reading(root.parent):  # shared: never beside a fetch writing this DEST
        lock = read_lock(lock_file)
        return verify_files(lock, root, lock_path=lock_file, jobs=jobs, strict=strict, progress=progress)


__all__ = [
    "LOCK_NAME",
    "READ_SIZE",
    "ByteCounter",
    "FileCheck",
    "ProgressFn",
    "Stopped",
    "VerifyResult",
    "default_jobs",
    "find_extra",
    "git_blob_sha1",
    "hash_file",
    "verify_files",
    "verify_lock",
]
