"""``--from-dir``: import an offline copy (USB disk, internal share) against a lock, never trusting the copy itself.

``PATH`` is either a gptoss DEST (``gptoss.lock.json`` + ``model/``), whose lock is used unless ``--lock`` is given,
or a plain folder of model files, which needs ``--lock``. Each file is hard-linked when source and destination share a
filesystem (no extra space), copied otherwise, into a staging folder in ``DEST/.gptoss-partial``; either way its
SHA-256 is computed in the same single read. A mismatch or missing file refuses the whole import (IntegrityError,
exit 3) and nothing in ``code/``, ``model/`` or the lock changes; only when every file matched are they moved in.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Optional

from gptoss_cli.errors import IntegrityError, UsageError
from gptoss_cli.fetch.download import PARTIAL_DIRNAME, FileOutcome
from gptoss_cli.fetch.git import fetch_code
from gptoss_cli.fetch.lockwrite import existing_lock, write_result
from gptoss_cli.fetch.plan import check_space, existing_ancestor, require_space
from gptoss_cli.fetch.select import check_safe_paths, is_selected, safe_target
from gptoss_cli.fetch.types import FetchOptions, FetchResult, Hooks, ModelResult
from gptoss_cli.lockfile import CODE_DIRNAME, LOCK_NAME, MODEL_DIRNAME, Lock, LockedFile, check_relpath, read_lock
from gptoss_cli.verify import ByteCounter, hash_file


def source_layout(src: Path, pinned: Optional[Lock]) -> tuple[Path, Lock]:
    """(folder holding the model files, lock to check them against) for a ``--from-dir`` PATH."""
    src = Path(src)
    if not src.is_dir():
        raise UsageError(f"--from-dir {src} is not a folder")
    own = src / LOCK_NAME
    files_root = src / MODEL_DIRNAME if own.is_file() and (src / MODEL_DIRNAME).is_dir() else src
    if pinned is not None:
        return files_root, pinned
    if own.is_file():
        return files_root, read_lock(own)
    raise UsageError(f"--from-dir {src} has no {LOCK_NAME}", hint="pass --lock FILE with the hashes to check against")


def stage_one(entry: LockedFile, files_root: Path, model_dir: Path, staging: Path,
              counter: ByteCounter) -> tuple[FileOutcome, Optional[Path]]:
    """Link (or copy) one file into ``staging`` and check its hash: ``(outcome, staged path or None)``.

    Nothing in ``model_dir`` is touched; ``None`` means the target already is the very same file (present).
    """
    why = check_relpath(entry.path)
    if why:
        raise IntegrityError(f"refusing {entry.path!r} from the lock: its path {why}")
    source = files_root / entry.path
    target = safe_target(model_dir, entry.path)
    if not source.is_file():
        raise IntegrityError(f"{entry.path} is missing from the offline copy {files_root}")
    if source.stat().st_size != entry.size:
        raise IntegrityError(f"{entry.path} in {files_root} is {source.stat().st_size} bytes, the lock says {entry.size}")
    if target.is_file() and target.stat().st_size == entry.size and os.path.samefile(target, source):
        digest, _, _ = hash_file(target, on_bytes=counter.add)
        staged, action = None, "present"
    else:
        staged = staging / entry.path
        staged.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(source, staged)
            digest, _, _ = hash_file(staged, on_bytes=counter.add)
            action = "linked"
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EACCES):
                raise
            with open(staged, "wb") as dst:
                digest, _, _ = hash_file(source, on_bytes=counter.add, sink=dst.write)
            action = "copied"
    if digest != entry.sha256:
        raise IntegrityError(f"{entry.path} in the offline copy does not match the lock: expected "
                             f"{entry.sha256}, got {digest}", hint="the copy is corrupt or modified; nothing was "
                                                                   "changed in DEST")
    return FileOutcome(entry.path, entry.size, digest, entry.hash_source, action), staged


class Staged:
    """Every file of an import, linked or copied next to ``model/`` and hash-checked; ``place`` moves them in."""

    def __init__(self, model_dir: Path, staging: Path) -> None:
        self.model_dir, self.staging = model_dir, staging
        self.outcomes: list[FileOutcome] = []
        self.files: list[tuple[str, Path]] = []

    def place(self) -> list[FileOutcome]:
        for rel, staged in self.files:
            target = safe_target(self.model_dir, rel)
            target.parent.mkdir(parents=True, exist_ok=True)
            safe_target(self.model_dir, rel)  # re-check: folders created since may be symlinks
            os.replace(staged, target)
        self.files = []
        return sorted(self.outcomes, key=lambda o: o.path)

    def discard(self) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)
        with contextlib.suppress(OSError):
            self.staging.parent.rmdir()  # DEST/.gptoss-partial, when nothing else (a resumable part) is in it


def stage_from_dir(files_root: Path, lock: Lock, model_dir: Path, *, jobs: int = 4,
                   counter: Optional[ByteCounter] = None) -> Staged:
    """Stage and check every file of ``lock`` from ``files_root``; the first mismatch refuses the whole import
    (IntegrityError) before anything changes in ``model_dir``. The caller places or discards the result."""
    counter = counter or ByteCounter(lock.total_size)
    staging = model_dir.parent / PARTIAL_DIRNAME / f"import-{os.urandom(6).hex()}"
    staging.mkdir(parents=True)
    result = Staged(model_dir, staging)
    entries = sorted(lock.files, key=lambda e: -e.size)
    try:
        with ThreadPoolExecutor(max_workers=max(1, min(jobs, len(entries) or 1))) as pool:
            try:
                done = list(pool.map(lambda e: stage_one(e, files_root, model_dir, staging, counter), entries))
            except BaseException:  # Ctrl-C or a refused file: running copies stop at their next read
                counter.stop()
                raise
    except BaseException:
        result.discard()
        raise
    for entry, (outcome, staged) in zip(entries, done):
        result.outcomes.append(outcome)
        if staged is not None:
            result.files.append((entry.path, staged))
    return result


def import_from_dir(files_root: Path, lock: Lock, model_dir: Path, *, jobs: int = 4,
                    counter: Optional[ByteCounter] = None) -> list[FileOutcome]:
    """Place every file of ``lock`` from ``files_root`` into ``model_dir``, all or nothing, after checking hashes."""
    staged = stage_from_dir(files_root, lock, model_dir, jobs=jobs, counter=counter)
    try:
        return staged.place()
    finally:
        staged.discard()


def fetch_from_dir(options: FetchOptions, hooks: Hooks, started: float) -> FetchResult:
    """The ``--from-dir`` branch of :func:`gptoss_cli.fetch.run.fetch` (code from ``PATH/code`` when present)."""
    src = Path(options.from_dir or ".")
    dest = Path(options.dest)
    files_root, lock = source_layout(src, options.pinned)
    if lock.model is None or not lock.files:
        raise UsageError("the lock lists no model files to import")
    check_safe_paths((e.path for e in lock.files), "the lock")
    spec = options.weights
    entries = tuple(e for e in lock.files if spec is None or not (spec.include or spec.exclude)
                    or is_selected(e.path, spec.include, spec.exclude))
    model_dir = dest / MODEL_DIRNAME
    same_fs = os.stat(files_root).st_dev == os.stat(existing_ancestor(dest)).st_dev
    todo = [e for e in entries if not ((model_dir / e.path).is_file()
                                       and (model_dir / e.path).stat().st_size == e.size)]
    space = check_space(dest, 0 if same_fs else sum(e.size for e in todo))
    pin = lock.model
    if options.dry_run:
        planned = tuple(FileOutcome(e.path, e.size, e.sha256, e.hash_source,
                                    "link" if same_fs else "copy") for e in entries)
        model = ModelResult(pin.source, pin.repo_id, pin.commit, pin.endpoint, "lock", planned,
                            sum(e.size for e in entries), 0)
        return FetchResult(dest, True, None, None, None, model, space, time.perf_counter() - started)
    require_space(dest, space.needed)
    dest.mkdir(parents=True, exist_ok=True)
    existing = existing_lock(dest, hooks.log)
    subset = Lock(code=lock.code, model=pin, files=entries)
    counter = ByteCounter(sum(e.size for e in entries), hooks.progress)
    staged = stage_from_dir(files_root, subset, model_dir, jobs=options.jobs, counter=counter)
    try:  # every file checked: only now may code/, model/ and the lock change
        code = None
        code_src = src / CODE_DIRNAME
        if options.code is not None and (code_src / ".git").exists():
            code = fetch_code(code_src.resolve().as_uri(), dest / CODE_DIRNAME,
                              ref=lock.code.commit if lock.code else None, progress=hooks.git)
            if lock.code is not None:
                code = replace(code, url=lock.code.url)
        elif options.code is not None:
            hooks.log(f"no git checkout at {code_src}: code skipped (pass --no-code to silence this)")
        outcomes = staged.place()
    finally:
        staged.discard()
    model = ModelResult(pin.source, pin.repo_id, pin.commit, pin.endpoint, "lock", tuple(outcomes),
                        sum(o.size for o in outcomes), 0)
    return write_result(dest, existing, code, model, space, started)


__all__ = ["Staged", "fetch_from_dir", "import_from_dir", "source_layout", "stage_from_dir", "stage_one"]
