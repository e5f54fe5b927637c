"""``JournalWriter``: appends sealed records (``chain.py``) to FILE, one ``write(2)`` per record, rotating by size.

- **Flush per record**: each line goes out in one ``os.write`` on an ``O_APPEND`` descriptor (no user-space buffer),
  so a record the server reports written is in the file (the kernel's page cache) before the next request.
- **Rotation keeps the chain**: past ``max_bytes`` FILE.N becomes FILE.N+1 (…), FILE becomes FILE.1 and a new FILE
  starts whose first record's ``prev`` is the last hash of FILE.1 and whose ``seq`` continues. Nothing is deleted.
- **Restart keeps the chain**: opening reads the last record of FILE (or of FILE.1 when FILE is new) and continues
  after it; a damaged last line refuses to open (``CouldNotRun``) instead of silently starting a second chain, and
  so does a FILE that ends before the ``seq`` FILE.head (rewritten in place after every record) says it reached.
- **A failed write** (disk full, I/O error) leaves no partial line (the file is cut back to its previous size), puts
  the writer in the failed state (``healthy`` is False) and counts the record as lost. The first write that works
  again first appends a ``{"kind":"journal","event":"resumed",...}`` record saying what was lost and since when,
  so the gap is itself on the chain. What the server does meanwhile (refuse with 503, or serve) is its choice.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
import threading
import time
from pathlib import Path
from typing import Any, Callable, Mapping

from gptoss_cli.errors import CouldNotRun
from gptoss_cli.journal.chain import GENESIS, head_bytes, head_path, read_head, seal, unseal

log = logging.getLogger("gptoss.journal")
_BLOCK = 64 * 1024


def rotated(path: Path, n: int) -> Path:
    return path.with_name(f"{path.name}.{n}")


def utc_now() -> str:
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z"


class JournalWriter:
    def __init__(self, path: Path | str, *, max_bytes: int | None = None,
                 write: Callable[[int, bytes], int] = os.write) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self._write = write  # os.write; tests inject failures here
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._head_fd: int | None = None
        self._size = 0
        self._regular = True
        self.seq = 0
        self.last_hash = GENESIS
        self.failed_since: str | None = None
        self.last_error: str | None = None
        self.lost: list[str] = []  # ids of records that could not be written during the current failure
        self.refused = 0  # requests the server refused meanwhile (it tells us)

    # -- opening ------------------------------------------------------------------------------------------------------
    def open(self) -> "JournalWriter":
        """Open FILE for appending and continue the chain found in it (or in FILE.1)."""
        try:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            info = os.fstat(self._fd)
        except OSError as exc:
            raise CouldNotRun(f"cannot open the journal {self.path}: {exc.strerror or exc}",
                              hint="check the folder exists and is writable") from None
        self._regular = stat.S_ISREG(info.st_mode)
        self._size = info.st_size if self._regular else 0
        if self._regular:
            tail = self._last_line(self.path) if self._size else None
            if tail is None and rotated(self.path, 1).is_file():
                tail = self._last_line(rotated(self.path, 1))
            if tail is not None:
                self._continue_after(tail)
            self._open_head()
        return self

    def _open_head(self) -> None:
        head = read_head(self.path)
        if head is not None and head[0] > self.seq:
            self.close()
            raise CouldNotRun(f"the journal {self.path} ends at seq {self.seq} but {head_path(self.path).name} "
                              f"says it reached seq {head[0]}: records were removed",
                              hint=f"run `gptoss journal verify {self.path}`, then move the files aside")
        try:
            self._head_fd = os.open(head_path(self.path), os.O_RDWR | os.O_CREAT, 0o600)
        except OSError:
            self._head_fd = None  # the chain still works; only a cut end would go unseen
        self._write_head()

    def _write_head(self) -> None:
        if self._head_fd is not None and self.seq:
            try:
                os.pwrite(self._head_fd, head_bytes(self.seq, self.last_hash), 0)
            except OSError:
                pass

    def _continue_after(self, line: bytes) -> None:
        record = unseal(line)
        if not record.intact or record.seq is None:
            self.close()
            raise CouldNotRun(f"the journal {self.path} ends with a damaged record",
                              hint=f"run `gptoss journal verify {self.path}`, then move the file aside")
        self.seq, self.last_hash = record.seq, record.hash or GENESIS

    @staticmethod
    def _last_line(path: Path) -> bytes | None:
        """The last line of ``path`` (without its newline); b"" for a file not ending in one (damaged)."""
        with open(path, "rb") as f:
            end = f.seek(0, os.SEEK_END)
            if end == 0:
                return None
            f.seek(end - 1)
            if f.read(1) != b"\n":
                return b""
            data, pos = b"", end - 1
            while pos > 0 and b"\n" not in data:
                step = min(_BLOCK, pos)
                pos -= step
                f.seek(pos)
                data = f.read(step) + data
            f.seek(pos)
            data = f.read(end - 1 - pos)
        return data.rsplit(b"\n", 1)[-1]

    # -- writing ------------------------------------------------------------------------------------------------------
    @property
    def healthy(self) -> bool:
        return self.failed_since is None

    def append(self, fields: Mapping[str, Any], *, record_id: str | None = None) -> bool:
        """Write one record; False (and the failed state) when it could not be written."""
        with self._lock:
            if not self.healthy and not self._resume():
                self._lose(record_id)
                return False
            if self._put(fields):
                return True
            self._lose(record_id)
            return False

    def probe(self) -> bool:
        """In the failed state, try to write the ``resumed`` record; True when the journal works again."""
        with self._lock:
            return self.healthy or self._resume()

    def note_refused(self) -> None:
        with self._lock:
            self.refused += 1

    def _resume(self) -> bool:
        note = {"ts": utc_now(), "kind": "journal", "event": "resumed", "failed_since": self.failed_since,
                "error": self.last_error, "lost": len(self.lost), "lost_ids": self.lost[:100],
                "refused": self.refused}
        if not self._put(note):
            return False
        self.failed_since = None
        log.warning("journal %s writable again (%d records lost, %d requests refused)", self.path,
                    len(self.lost), self.refused)
        self.lost, self.refused, self.last_error = [], 0, None
        return True

    def _lose(self, record_id: str | None) -> None:
        if record_id is not None:
            self.lost.append(record_id)
        else:
            self.lost.append("-")

    def _put(self, fields: Mapping[str, Any]) -> bool:
        line, digest = seal(fields, seq=self.seq + 1, prev=self.last_hash)
        try:
            if self._fd is None:
                raise OSError(errno.EBADF, "the journal is closed")
            if self._regular and self.max_bytes and self._size and self._size + len(line) > self.max_bytes:
                self._rotate()
            self._write_all(line)
        except OSError as exc:
            self._failed(exc)
            return False
        self.seq += 1
        self.last_hash = digest
        self._size += len(line)
        self._write_head()
        return True

    def _write_all(self, line: bytes) -> None:
        assert self._fd is not None
        done = 0
        try:
            while done < len(line):
                done += self._write(self._fd, line[done:])
        except OSError:
            if self._regular:  # never leave half a record behind
                try:
                    os.ftruncate(self._fd, self._size)
                except OSError:
                    pass
            raise

    def _failed(self, exc: OSError) -> None:
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        if self.healthy:
            log.error("cannot write the journal %s: %s", self.path, reason)
            self.failed_since = utc_now()
        self.last_error = reason

    def _rotate(self) -> None:
        assert self._fd is not None
        os.fsync(self._fd)
        if self.path.exists():  # else an earlier try got as far as the rename: only the new file is missing
            n = 1
            while rotated(self.path, n).exists():
                n += 1
            for i in range(n - 1, 0, -1):
                os.replace(rotated(self.path, i), rotated(self.path, i + 1))
            os.replace(self.path, rotated(self.path, 1))
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        os.close(self._fd)
        self._fd, self._size = fd, 0

    def close(self) -> None:
        with self._lock:
            if self._fd is None:
                return
            try:
                if self._regular:
                    os.fsync(self._fd)
            except OSError:
                pass
            os.close(self._fd)
            self._fd = None
            if self._head_fd is not None:
                os.close(self._head_fd)
                self._head_fd = None


__all__ = ["JournalWriter", "rotated", "utc_now"]
