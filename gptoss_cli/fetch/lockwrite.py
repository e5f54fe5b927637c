"""The end of every fetch that writes: read DEST's lock as it was, merge what this run fetched, write it atomically.

Shared by the endpoint path (``run.py``) and the ``--from-dir`` path (``offline.py``) so both keep the same rule:
fetched parts replace, untouched parts (``--no-code`` / ``--no-weights``) are kept from the existing lock.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Optional

from gptoss_cli.fetch.git import CodeResult
from gptoss_cli.fetch.plan import SpaceCheck
from gptoss_cli.fetch.types import FetchResult, KernelResult, ModelResult
from gptoss_cli.kernels import KERNELS_DIRNAME
from gptoss_cli.lockfile import (
    LOCK_NAME,
    CodePin,
    KernelsPin,
    Lock,
    LockedFile,
    LockError,
    ModelPin,
    VocabPin,
    read_lock,
    write_lock,
)


def existing_lock(dest: Path, log: Callable[[str], None]) -> Optional[Lock]:
    """DEST's lock before this run, or None (absent, or unreadable: then said through ``log`` and ignored)."""
    if not (dest / LOCK_NAME).is_file():
        return None
    try:
        return read_lock(dest / LOCK_NAME)
    except LockError as exc:
        log(f"ignoring the existing lock: {exc.one_line()}")
        return None


def _is_kernel(path: str) -> bool:
    return path.startswith(KERNELS_DIRNAME + "/")


def build_lock(existing: Optional[Lock], code: Optional[CodeResult], model: Optional[ModelResult],
               kernels: Optional[KernelResult] = None) -> Lock:
    """The new lock: fetched parts replace, untouched parts are kept from DEST's existing lock. Kernel files
    (``kernels/…``, paths already prefixed) follow the kernel pin, model files the model pin."""
    code_pin = CodePin(code.url, code.commit) if code is not None else (existing.code if existing else None)
    old = existing.files if existing else ()
    if model is not None:
        model_pin = ModelPin(model.source, model.repo_id, model.commit, model.endpoint)
        files = tuple(LockedFile(f.path, f.size, f.sha256 or "", f.hash_source) for f in model.files)
    else:
        model_pin = existing.model if existing else None
        files = tuple(f for f in old if not _is_kernel(f.path))
    if kernels is not None:
        kernel_pin: Optional[KernelsPin] = KernelsPin(kernels.repo_id, kernels.revision, kernels.commit,
                                                      kernels.endpoint)
        files += tuple(LockedFile(f.path, f.size, f.sha256 or "", f.hash_source) for f in kernels.files)
    else:
        kernel_pin = existing.kernels if existing else None
        files += tuple(f for f in old if _is_kernel(f.path)) if kernel_pin else ()
    return Lock(code=code_pin, model=model_pin, files=files, kernels=kernel_pin, vocab=shipped_vocab())


def shipped_vocab() -> VocabPin:
    """The ``o200k_base.tiktoken`` this gptoss ships (and gives vLLM offline), recorded in every lock it writes."""
    from gptoss_cli.vocab import O200K_NAME, O200K_SHA256, O200K_SIZE

    return VocabPin(O200K_NAME, O200K_SIZE, O200K_SHA256)


def write_result(dest: Path, existing: Optional[Lock], code: Optional[CodeResult], model: Optional[ModelResult],
                 space: Optional[SpaceCheck], started: float, kernels: Optional[KernelResult] = None) -> FetchResult:
    """Write ``DEST/gptoss.lock.json`` (see :func:`build_lock`) and return the finished run's result."""
    lock_path = write_lock(dest, build_lock(existing, code, model, kernels))
    return FetchResult(dest, False, lock_path, code, None, model, space, time.perf_counter() - started, kernels)


__all__ = ["build_lock", "existing_lock", "shipped_vocab", "write_result"]
