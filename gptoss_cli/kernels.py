"""The native MXFP4 kernel repo transformers loads for gpt-oss, and where ``gptoss fetch`` keeps it for offline use.

transformers 5.25 calls ``get_kernel("kernels-community/gpt-oss-triton-kernels", version=1)``
(``integrations/mxfp4.py``), which downloads from the Hub at load time. ``gptoss fetch`` downloads that repo at
branch ``v<version>`` through the same endpoint or mirror as the weights, into ``DEST/model/kernels/<name>/`` (hashed
into the lock, so ``gptoss verify`` covers it), and ``gptoss serve`` points ``kernels`` at that folder
(``LOCAL_KERNELS=repo=folder``) so nothing is fetched at run time. ``wanted_kernel()`` reads the repo and version the
installed transformers asks for from its source, without importing it (no torch).
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

KERNEL_REPO = "kernels-community/gpt-oss-triton-kernels"
KERNEL_VERSION = 1
KERNELS_DIRNAME = "kernels"
_CALL = re.compile(r"""get_kernel\(\s*["'](?P<repo>[\w.-]+/gpt-oss[\w.-]*)["']\s*,\s*version\s*=\s*(?P<v>\d+)""")


def wanted_kernel() -> tuple[str, int]:
    """``(repo_id, version)`` the installed transformers loads for MXFP4 (transformers 5.25's when unreadable)."""
    spec = importlib.util.find_spec("transformers")
    if spec is not None and spec.origin:
        source = Path(spec.origin).parent / "integrations" / "mxfp4.py"
        try:
            found = _CALL.search(source.read_text(encoding="utf-8"))
        except OSError:
            found = None
        if found:
            return found.group("repo"), int(found.group("v"))
    return KERNEL_REPO, KERNEL_VERSION


def kernel_folder(model_dir: Path, repo_id: str = KERNEL_REPO) -> Path:
    """Where ``gptoss fetch`` puts ``repo_id`` for the model in ``model_dir``."""
    return Path(model_dir) / KERNELS_DIRNAME / repo_id.split("/")[-1]


def fetched_kernel(model_dir: Path, repo_id: str = KERNEL_REPO) -> Path | None:
    """The fetched kernel folder when it holds build variants (``build/``), else None."""
    folder = kernel_folder(model_dir, repo_id)
    return folder if (folder / "build").is_dir() else None


__all__ = ["KERNELS_DIRNAME", "KERNEL_REPO", "KERNEL_VERSION", "fetched_kernel", "kernel_folder", "wanted_kernel"]
