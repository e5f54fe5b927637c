"""``--from-dir``: import an offline copy (USB disk, internal share) against a lock, never trusting the copy itself.

``PATH`` is either a gptoss DEST (``gptoss.lock.json`` + ``model/``), whose lock is used unless ``--lock`` is given,
or a plain folder of model files, which needs ``--lock``. Each file is hard-linked when source and destination share a
filesystem (no extra space), copied otherwise; either way its SHA-256 is computed in the same single read and a
mismatch or missing file refuses the import (IntegrityError, exit 3) before anything lands in ``model/``.
"""

from __future__ import annotations

import errno
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from gptoss_cli.errors import IntegrityError, UsageError
from gptoss_cli.fetch.download import FileOutcome
from gptoss_cli.fetch.select import safe_target
from gptoss_cli.lockfile import LOCK_NAME, MODEL_DIRNAME, Lock, LockedFile, check_relpath, read_lock
from gptoss_cli.verify import ByteCounter, hash_file

if TYPE_CHECKING:
    from gptoss_cli.fetch.run import FetchOptions, FetchResult, Hooks


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


def import_one(entry: LockedFile, files_root: Path, model_dir: Path, counter: ByteCounter) -> FileOutcome:
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
        action = "present"
    else:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.gptoss-import")
        tmp.unlink(missing_ok=True)
        try:
            try:
                os.link(source, tmp)
                digest, _, _ = hash_file(tmp, on_bytes=counter.add)
                action = "linked"
            except OSError as exc:
                if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EACCES):
                    raise
                with open(tmp, "wb") as dst:
                    digest, _, _ = hash_file(source, on_bytes=counter.add, sink=dst.write)
                action = "copied"
            if digest != entry.sha256:
                raise IntegrityError(f"{entry.path} in the offline copy does not match the lock: expected "
                                     f"{entry.sha256}, got {digest}", hint="the copy is corrupt or modified; refused")
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
    if digest != entry.sha256:
        raise IntegrityError(f"{entry.path}: expected {entry.sha256}, got {digest}")
    return FileOutcome(entry.path, entry.size, digest, entry.hash_source, action)


def import_from_dir(files_root: Path, lock: Lock, model_dir: Path, *, jobs: int = 4,
                    counter: Optional[ByteCounter] = None) -> list[FileOutcome]:
    """Place every file of ``lock`` from ``files_root`` into ``model_dir`` after checking its hash."""
    counter = counter or ByteCounter(lock.total_size)
    model_dir.mkdir(parents=True, exist_ok=True)
    entries = sorted(lock.files, key=lambda e: -e.size)
    with ThreadPoolExecutor(max_workers=max(1, min(jobs, len(entries) or 1))) as pool:
        try:
            outcomes = list(pool.map(lambda e: import_one(e, files_root, model_dir, counter), entries))
        except BaseException:  # Ctrl-C or a refused file: running copies stop at their next read
            counter.stop()
            raise
    return sorted(outcomes, key=lambda o: o.path)


def fetch_from_dir(options: "FetchOptions", hooks: "Hooks", started: float) -> "FetchResult":
    """The ``--from-dir`` branch of :func:`gptoss_cli.fetch.run.fetch` (code from ``PATH/code`` when present)."""
    from gptoss_cli.fetch.git import fetch_code
    from gptoss_cli.fetch.plan import check_space, existing_ancestor, require_space
    from gptoss_cli.fetch.run import FetchResult, ModelResult, _existing_lock, build_lock
    from gptoss_cli.fetch.select import check_safe_paths, is_selected
    from gptoss_cli.lockfile import CODE_DIRNAME, write_lock

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
    existing = _existing_lock(dest, hooks.log)
    code = None
    code_src = src / CODE_DIRNAME
    if options.code is not None and (code_src / ".git").exists():
        code = fetch_code(code_src.resolve().as_uri(), dest / CODE_DIRNAME,
                          ref=lock.code.commit if lock.code else None, progress=hooks.git)
        if lock.code is not None:
            code = replace(code, url=lock.code.url)
    elif options.code is not None:
        hooks.log(f"no git checkout at {code_src}: code skipped (pass --no-code to silence this)")
    subset = Lock(code=lock.code, model=pin, files=entries)
    counter = ByteCounter(sum(e.size for e in entries), hooks.progress)
    outcomes = import_from_dir(files_root, subset, model_dir, jobs=options.jobs, counter=counter)
    model = ModelResult(pin.source, pin.repo_id, pin.commit, pin.endpoint, "lock", tuple(outcomes),
                        sum(o.size for o in outcomes), 0)
    lock_path = write_lock(dest, build_lock(existing, code, model))
    return FetchResult(dest, False, lock_path, code, None, model, space, time.perf_counter() - started)


__all__ = ["fetch_from_dir", "import_from_dir", "import_one", "source_layout"]
