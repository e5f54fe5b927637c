"""Resumable, hash-while-streaming, parallel file downloads into the model folder.

Each file streams into ``DEST/.gptoss-partial/<id>.part``. The part's name carries the expected hash, so a part is
only ever resumed for the same content. A later run (even after ``kill -9``) hashes the bytes already in the part
once, then asks for the rest with ``Range: bytes=N-``; a server that answers 200 instead of 206 gets a clean
restart from byte 0. SHA-256 (and the git blob id, when that is the expected hash) is computed from the byte stream
itself, so there is no second read pass. A finished part whose hash differs is deleted and downloaded once more;
a second mismatch is an IntegrityError naming file, expected and actual hash. Only then is the part renamed into
place, so a file in ``model/`` is always complete and checked.
"""

from __future__ import annotations

import errno
import hashlib
import os
import queue
import shutil
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import httpx

from gptoss_cli.errors import GptossError, IntegrityError, NetworkError
from gptoss_cli.fetch.http import Requester, RetryableError, http_error
from gptoss_cli.fetch.select import safe_target
from gptoss_cli.verify import READ_SIZE, ByteCounter, Stopped, git_blob_sha1, hash_file

WRITE_BUFFER = 1024 * 1024  # at most this much is lost (and fetched again) when the process is killed
PARTIAL_DIRNAME = ".gptoss-partial"
MIN_PROGRESS = 256 * 1024  # bytes per try, on average, below which resuming is given up
STOP_GRACE = 0.5  # seconds a cancelled run waits for workers that cannot be woken (waiting for headers)


@dataclass(frozen=True)
class PlannedFile:
    """A file to place in the model folder and the hash it must have (``sha256`` or, failing that, ``git_oid``)."""

    path: str
    size: int
    sha256: Optional[str]
    git_oid: Optional[str]
    hash_source: str
    url: str


@dataclass(frozen=True)
class FileOutcome:
    """What happened to one file: downloaded, resumed, present (already there and matching), linked, copied."""

    path: str
    size: int
    sha256: Optional[str]  # None only in a --dry-run plan for a file checked by git blob id
    hash_source: str
    action: str
    transferred: int = 0


class Cancelled(Exception):
    """Another download failed or the user pressed Ctrl-C: stop streaming, keep the part for next time."""


class _State:
    def __init__(self, pf: PlannedFile) -> None:
        self.pf = pf
        self.transferred = 0  # bytes received over the network in this run
        self.reset()

    def reset(self) -> None:
        self.offset = 0
        self.sha = hashlib.sha256()
        self.git = git_blob_sha1(self.pf.size) if self.pf.sha256 is None else None
        self.overflow = False

    def update(self, chunk: bytes | memoryview) -> None:
        self.sha.update(chunk)
        if self.git is not None:
            self.git.update(chunk)
        self.offset += len(chunk)


def part_name(pf: PlannedFile) -> str:
    expected = (pf.sha256 or pf.git_oid or "nohash")[:16]
    return f"{hashlib.sha256(pf.path.encode()).hexdigest()[:16]}-{expected}.part"


def hash_matches(pf: PlannedFile, sha256: str, git_oid: Optional[str]) -> bool:
    if pf.sha256 is not None:
        return sha256 == pf.sha256
    return git_oid is not None and git_oid == pf.git_oid


class Downloader:
    """Downloads planned files into ``model_dir``; one instance per fetch, shared by the worker threads."""

    def __init__(
        self,
        requester: Requester,
        model_dir: Path,
        partial_dir: Path,
        *,
        counter: Optional[ByteCounter] = None,
        log: Callable[[str], None] = lambda _m: None,
        on_file: Callable[[str, int, int], None] = lambda _path, _done, _total: None,
        retries: int = 5,
        retry_wait: float = 0.5,
    ) -> None:
        self.requester = requester
        self.model_dir = model_dir
        self.partial_dir = partial_dir
        self.counter = counter or ByteCounter(0)
        self.log = log
        self.on_file = on_file  # (path, files done, files in all), from a worker thread, one call at a time
        self.retries = retries
        self.retry_wait = retry_wait
        self.cancel = threading.Event()
        self._active: set[httpx.Response] = set()
        self._active_lock = threading.Lock()

    # -- the pool ------------------------------------------------------------------------------------------------

    def run(self, files: list[PlannedFile], jobs: int) -> list[FileOutcome]:
        """Download ``files`` with ``jobs`` threads, biggest first; the first failure stops the others.

        The workers are daemon threads, and once the run is cancelled (a failure, Ctrl-C) this waits at most
        ``STOP_GRACE`` seconds for them: a worker still waiting for a server's headers (a mirror at 1 byte/s)
        cannot be woken, and must not hold the process. Every byte already received stays in its part file.
        """
        todo: queue.SimpleQueue[PlannedFile] = queue.SimpleQueue()
        for pf in sorted(files, key=lambda f: (-f.size, f.path)):
            todo.put(pf)
        results: list[FileOutcome] = []
        errors: list[BaseException] = []
        count = max(1, min(jobs, len(files) or 1))
        running = [count]
        all_done = threading.Event()
        done_lock = threading.Lock()

        def worker() -> None:
            try:
                while not self.cancel.is_set():
                    try:
                        pf = todo.get_nowait()
                    except queue.Empty:
                        return
                    try:
                        outcome = self.one(pf)
                        with done_lock:  # one file-done report at a time, in completion order
                            results.append(outcome)
                            self.on_file(outcome.path, len(results), len(files))
                    except (Cancelled, Stopped):
                        return
                    except BaseException as exc:  # noqa: BLE001 - handed to the caller below
                        errors.append(exc)
                        self.stop()
                        return
            finally:
                with done_lock:
                    running[0] -= 1
                    if running[0] == 0:
                        all_done.set()

        for i in range(count):
            threading.Thread(target=worker, name=f"gptoss-fetch-{i}", daemon=True).start()
        try:
            self._wait(all_done)
        except BaseException:  # Ctrl-C: stop every worker now, even one waiting on a silent server
            self.stop()
            self._wait(all_done)
            raise
        if errors:
            raise next((e for e in errors if isinstance(e, GptossError)), errors[0])
        if len(results) != len(files):
            raise Cancelled()
        return sorted(results, key=lambda r: r.path)

    def _wait(self, all_done: threading.Event) -> None:
        """Until every worker is done; once the run is cancelled, until no worker is still writing a part (those
        were woken by ``stop`` and only flush and close, bounded) and ``STOP_GRACE`` seconds have passed.

        (An Event, not ``Thread.join``: a join interrupted by Ctrl-C can leave ``is_alive()`` wrongly False.)
        """
        soft = hard = 0.0
        while not all_done.wait(0.05):
            if self.cancel.is_set():
                now = time.monotonic()
                soft, hard = soft or now + STOP_GRACE, hard or now + 10 * STOP_GRACE
                with self._active_lock:
                    writing = bool(self._active)
                if now >= hard or (now >= soft and not writing):
                    return

    def stop(self) -> None:
        """Make queued files return at once and running ones stop (keeping their parts for the next run).

        A worker blocked reading from a stalled server would otherwise hold the process until the read timeout,
        so the sockets of open responses are shut down; the worker then sees ``cancel`` and raises Cancelled.
        (Queued futures are not cancelled through the pool: ``as_completed`` would never hear about them.)
        """
        self.cancel.set()
        self.counter.stop()  # a worker hashing an existing file or part stops at its next read
        with self._active_lock:
            responses = list(self._active)
        for response in responses:
            stream = response.extensions.get("network_stream")
            sock = stream.get_extra_info("socket") if stream is not None else None
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    # -- one file ------------------------------------------------------------------------------------------------

    def one(self, pf: PlannedFile) -> FileOutcome:
        if self.cancel.is_set():
            raise Cancelled()
        target = safe_target(self.model_dir, pf.path)
        present = self._present(pf, target)
        if present is not None:
            return present
        part = self.partial_dir / part_name(pf)
        for attempt in (1, 2):
            state, resumed = self._download(pf, part)
            sha, git = state.sha.hexdigest(), (state.git.hexdigest() if state.git else None)
            if state.offset == pf.size and not state.overflow and hash_matches(pf, sha, git):
                self._place(part, target, pf)
                action = "resumed" if resumed else "downloaded"
                return FileOutcome(pf.path, pf.size, sha, pf.hash_source, action, state.transferred)
            part.unlink(missing_ok=True)
            self.counter.add(-state.offset)
            if attempt == 1:
                self.log(f"{pf.path}: downloaded bytes do not match the expected hash; deleted, retrying once")
        expected, actual = (pf.sha256, sha) if pf.sha256 else (f"git blob {pf.git_oid}", f"git blob {git}")
        if state.overflow:
            actual = f"more than the {pf.size} bytes listed"
        raise IntegrityError(
            f"{pf.path}: hash mismatch after 2 downloads: expected {expected}, got {actual}",
            hint="the endpoint serves different bytes than its metadata/lock says; try another mirror",
        )

    def _present(self, pf: PlannedFile, target: Path) -> Optional[FileOutcome]:
        """An existing target that already matches, hashed once: a file enters the lock only after its hash
        matched, and a rerun is how `gptoss verify` tells users to repair a damaged file of the right size."""
        try:
            if not target.is_file() or target.stat().st_size != pf.size:
                return None
        except OSError:
            return None
        sha, git, read = hash_file(target, on_bytes=self.counter.add, git_blob=pf.sha256 is None)
        if read == pf.size and hash_matches(pf, sha, git):
            return FileOutcome(pf.path, pf.size, sha, pf.hash_source, "present")
        self.counter.add(-read)
        self.log(f"{pf.path}: the existing file does not match the expected hash; downloading it again")
        return None

    def _prime(self, pf: PlannedFile, part: Path) -> _State:
        """Start from an existing part: hash the bytes already there once (counted as progress)."""
        state = _State(pf)
        try:
            have = part.stat().st_size
        except FileNotFoundError:
            return state
        if have > pf.size:
            part.unlink()
            return state
        view = memoryview(bytearray(READ_SIZE))
        with open(part, "rb", buffering=0) as fh:
            while state.offset < have:
                n = fh.readinto(view[: min(len(view), have - state.offset)])
                if not n:
                    break
                state.update(view[:n])
                self.counter.add(n)
        return state

    def _download(self, pf: PlannedFile, part: Path) -> tuple[_State, bool]:
        """Stream ``pf`` into ``part``, resuming after transient failures.

        ``retries`` counts consecutive tries without progress: a try that received bytes resets it (and the
        back-off), so a server that cuts every response still finishes. Overall at most ``retries + 1 +
        size / MIN_PROGRESS`` tries: a server that gives only crumbs per connection is given up on too.
        """
        self.partial_dir.mkdir(parents=True, exist_ok=True)
        state = self._prime(pf, part)
        resumed = state.offset > 0
        limit = self.retries + 1 + pf.size // MIN_PROGRESS
        stalled = 0
        for tries in range(1, limit + 1):
            before = state.offset
            try:
                self._stream(pf, part, state)
                return state, resumed
            except RetryableError as exc:
                if self.cancel.is_set():
                    raise Cancelled() from None
                stalled = 0 if state.offset > before else stalled + 1
                if stalled > self.retries or tries == limit:
                    raise NetworkError(f"{pf.path}: giving up after {tries} tries: {exc}",
                                       hint="rerun the same command to resume from the partial file") from None
                self.log(f"{pf.path}: {exc}; retrying from byte {state.offset}")
                if self.cancel.wait(self.retry_wait * (2 ** max(0, stalled - 1))):
                    raise Cancelled()
        raise AssertionError("unreachable")  # pragma: no cover

    def _stream(self, pf: PlannedFile, part: Path, state: _State) -> None:
        if state.offset >= pf.size:
            return
        headers = {"Range": f"bytes={state.offset}-"} if state.offset else {}
        response = self.requester.open(pf.url, headers)
        with self._active_lock:
            self._active.add(response)
        try:
            if self.cancel.is_set():
                raise Cancelled()
            if response.status_code == 416:
                self._restart(pf, part, state, "the server refused the resume range")
                raise RetryableError("HTTP 416 on resume")
            if response.status_code not in (200, 206):
                raise http_error(response.status_code, pf.url)
            if state.offset and not _range_ok(response, state.offset):
                self._restart(pf, part, state, "the server ignored the Range request")
            mode = "ab" if state.offset else "wb"
            with open(part, mode, buffering=WRITE_BUFFER) as fh:
                try:
                    for chunk in response.iter_raw():
                        if state.offset + len(chunk) > pf.size:
                            state.overflow = True  # more bytes than listed: never a match
                            break
                        state.update(chunk)
                        fh.write(chunk)  # kept even when cancelled: every byte received is resumable
                        state.transferred += len(chunk)
                        if self.cancel.is_set():
                            raise Cancelled()
                        self.counter.add(len(chunk))
                except httpx.TransportError as exc:
                    if self.cancel.is_set():
                        raise Cancelled() from None
                    raise RetryableError(f"{type(exc).__name__} after byte {state.offset}") from None
        finally:
            with self._active_lock:
                self._active.discard(response)
            response.close()
        if self.cancel.is_set():
            raise Cancelled()
        if state.offset < pf.size and not state.overflow:
            raise RetryableError(f"connection closed at byte {state.offset} of {pf.size}")

    def _restart(self, pf: PlannedFile, part: Path, state: _State, why: str) -> None:
        self.log(f"{pf.path}: {why}; restarting it from byte 0")
        self.counter.add(-state.offset)
        part.unlink(missing_ok=True)
        state.reset()

    def _place(self, part: Path, target: Path, pf: PlannedFile) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        safe_target(self.model_dir, pf.path)  # re-check: folders created since may be symlinks
        try:
            os.replace(part, target)
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            tmp = target.with_name(f".{target.name}.gptoss-tmp")
            shutil.copyfile(part, tmp)
            os.replace(tmp, target)
            part.unlink()


def _range_ok(response: httpx.Response, offset: int) -> bool:
    if response.status_code != 206:
        return False
    value = response.headers.get("content-range", "")
    try:
        start = int(value.split()[1].split("-")[0])
    except (IndexError, ValueError):
        return False
    return start == offset


__all__ = ["PARTIAL_DIRNAME", "Cancelled", "Downloader", "FileOutcome", "PlannedFile", "hash_matches", "part_name"]
