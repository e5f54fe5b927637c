"""The o200k_base vocabulary gpt-oss's tokenizer is built on, shipped as package data so that nothing downloads it.

openai-harmony (inside vLLM) and tiktoken fetch ``o200k_base.tiktoken`` from the internet at run time unless
``TIKTOKEN_ENCODINGS_BASE`` names a folder holding it (vllm-project/vllm#22525). ``encodings_base()`` returns this
package's folder after checking the file's SHA-256, so a damaged install fails with one clear line instead of a
tokenizer that quietly differs.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

from gptoss_cli.errors import CouldNotRun

O200K_NAME = "o200k_base.tiktoken"
O200K_SHA256 = "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d"
O200K_SIZE = 3_613_922
SHIPPED = Path(__file__).parent


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@functools.lru_cache(maxsize=4)
def _checked(folder: Path, size: int, mtime_ns: int) -> Path:
    found = sha256_of(folder / O200K_NAME)
    if found != O200K_SHA256:
        raise CouldNotRun(f"{folder / O200K_NAME} has SHA-256 {found[:12]}…, not o200k_base's {O200K_SHA256[:12]}…",
                          hint="reinstall gptoss, or point TIKTOKEN_ENCODINGS_BASE at a good copy")
    return folder


def check_encodings_base(folder: Path) -> Path:
    """``folder`` after checking that it holds the real ``o200k_base.tiktoken`` (CouldNotRun if not)."""
    path = Path(folder) / O200K_NAME
    try:
        stat = path.stat()
    except OSError:
        raise CouldNotRun(f"{path} is missing", hint="reinstall gptoss (the file is package data)") from None
    return _checked(Path(folder), stat.st_size, stat.st_mtime_ns)


def encodings_base() -> Path:
    """The shipped folder for ``TIKTOKEN_ENCODINGS_BASE``, its file checked."""
    return check_encodings_base(SHIPPED)


__all__ = ["O200K_NAME", "O200K_SHA256", "O200K_SIZE", "SHIPPED", "check_encodings_base", "encodings_base",
           "sha256_of"]
