"""DEST, the folder ``gptoss fetch`` fills: one writer at a time, nothing followed outside it, nothing left behind.

* :func:`claim` (fetch, ``--from-dir``): an exclusive ``flock`` on ``DEST/.gptoss.flock``, which records who holds
  it (pid, host, start time, command). A second writer, or a ``verify`` while a writer runs, gets
  :class:`DestBusy` (exit 3) naming the holder instead of corrupting the model. The kernel drops the lock when the
  process ends, even after ``kill -9``: a stale lock never needs cleaning up. If the run fails, the folders it
  created (DEST and missing parents) are removed again when nothing but the lock file is in them.
* :func:`reading` (verify, serve's check): a shared lock: readers run together, never beside a writer. A reader
  writes nothing: a folder without the lock file (never written by ``gptoss fetch``, a shipped model, read-only
  media) is verified without a lock.
* :func:`inside`: the one symlink rule. A path under DEST whose real location (symlinks resolved) leaves DEST is
  refused with IntegrityError, by fetch (so it never writes through a link) and by verify (so it never vouches for
  files elsewhere).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import json
import os
import socket
from pathlib import Path
from typing import Iterator, Optional

from gptoss_cli.errors import CouldNotRun, IntegrityError

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: no locking
    fcntl = None  # type: ignore[assignment]

FLOCK_NAME = ".gptoss.flock"
_READ_ONLY = (errno.EACCES, errno.EPERM, errno.EROFS)


class DestBusy(CouldNotRun):
    """Another gptoss process holds DEST (exit 3); the message names it."""


def inside(dest: Path, path: Path) -> Path:
    """``path`` unchanged after checking that, with every symlink resolved, it stays inside ``dest``."""
    real_dest = os.path.realpath(dest)
    real = os.path.realpath(path)
    if os.path.commonpath([real_dest, real]) != real_dest:
        raise IntegrityError(f"refusing {path}: it resolves to {real}, outside {dest} (symlink)",
                             hint="gptoss follows no symlink that leaves DEST: replace the link by the real "
                                  "file or folder, or point --dest at the real location")
    return path


def _holder_text(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0) or b"null")
        return (f"gptoss {info['command']} (pid {info['pid']} on {info['host']}, since {info['since']})"
                if isinstance(info, dict) else "")
    except (OSError, ValueError, KeyError):
        return ""


def _busy(dest: Path, fd: int, exclusive: bool) -> DestBusy:
    holder = _holder_text(fd)
    if not exclusive:
        return DestBusy(f"{dest} is being written by {holder or 'another gptoss fetch'}",
                        hint="verify it when that run has finished")
    return DestBusy(f"{dest} is in use by {holder or 'another gptoss process reading it (verify or serve)'}",
                    hint="wait for it to finish or stop it, then rerun; the lock ends with that process")


def _lock_fd(dest: Path, exclusive: bool) -> Optional[int]:
    """An open descriptor holding the lock on ``dest``'s lock file, or None for a reader when there is none."""
    path = dest / FLOCK_NAME
    for _ in range(20):
        try:
            if exclusive:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            else:  # a reader creates nothing: every writer made the file before writing anything
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            if exclusive or exc.errno not in (*_READ_ONLY, errno.ENOENT):
                raise
            return None  # never written by gptoss fetch (or not ours to open): nothing to wait for
        try:
            fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
        except BlockingIOError:
            busy = _busy(dest, fd, exclusive)
            os.close(fd)
            raise busy from None
        try:  # a failed run may have removed the file between our open and flock: lock the current one
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)
        if exclusive:
            dest.mkdir(parents=True, exist_ok=True)
    raise CouldNotRun(f"cannot lock {path}: it keeps being replaced")


def _missing_dirs(dest: Path) -> list[Path]:
    """``dest`` and each missing parent, deepest first: what ``mkdir(parents=True)`` is about to create."""
    out = []
    path = Path(os.path.abspath(dest))
    while not os.path.lexists(path) and path.parent != path:
        out.append(path)
        path = path.parent
    return out


@contextlib.contextmanager
def claim(dest: Path, command: str = "fetch") -> Iterator[None]:
    """Hold DEST exclusively for writing; on failure remove the folders this call created if still empty."""
    dest = Path(dest)
    created = _missing_dirs(dest)
    dest.mkdir(parents=True, exist_ok=True)
    fresh_lock = not os.path.lexists(dest / FLOCK_NAME)
    fd = None
    try:
        if fcntl is not None:
            fd = _lock_fd(dest, exclusive=True)
            assert fd is not None
            since = _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")
            info = {"command": command, "host": socket.gethostname(), "pid": os.getpid(), "since": since}
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(info).encode() + b"\n", 0)
        yield
    except BaseException:
        if fresh_lock and fd is not None:
            (dest / FLOCK_NAME).unlink(missing_ok=True)
        _release(fd)
        fd = None
        for path in created:
            try:
                path.rmdir()
            except OSError:
                break  # not empty: it holds something worth keeping (partial downloads, a checkout)
        raise
    finally:
        _release(fd)


def _release(fd: Optional[int]) -> None:
    if fd is None:
        return
    with contextlib.suppress(OSError):
        os.ftruncate(fd, 0)
    os.close(fd)


@contextlib.contextmanager
def reading(dest: Path) -> Iterator[None]:
    """Hold DEST shared (verify): never beside a writer. No lock (and no file created) when DEST has no lock file."""
    dest = Path(dest)
    fd = _lock_fd(dest, exclusive=False) if fcntl is not None and dest.is_dir() else None
    try:
        yield
    finally:
        if fd is not None:
            os.close(fd)


__all__ = ["FLOCK_NAME", "DestBusy", "claim", "inside", "reading"]
