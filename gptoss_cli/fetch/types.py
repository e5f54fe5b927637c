"""What ``fetch()`` takes and returns: the option, hook and result dataclasses every fetch path shares.

``run.py`` (endpoint downloads) and ``offline.py`` (``--from-dir``) both build these; living here, neither needs the
other to name them. ``gptoss_cli.fetch`` and ``gptoss_cli.fetch.run`` re-export them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from gptoss_cli.config import Secret
from gptoss_cli.fetch.download import FileOutcome
from gptoss_cli.fetch.git import CodeResult, GitProgressFn, SshOptions
from gptoss_cli.fetch.plan import SpaceCheck
from gptoss_cli.lockfile import Lock
from gptoss_cli.verify import ProgressFn


@dataclass(frozen=True)
class CodeSpec:
    url: str = "https://github.com/openai/gpt-oss"
    ref: Optional[str] = None
    mirror: Optional[str] = None
    ssh: Optional[SshOptions] = None  # key, GIT_SSH_COMMAND, GIT_SSH (used for SSH URLs)


@dataclass(frozen=True)
class WeightsSpec:
    source: str = "hf"
    repo_id: str = "openai/gpt-oss-20b"
    revision: str = "main"
    endpoint: str = "https://huggingface.co"
    token: Optional[Secret] = None
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    allow_pickle: bool = False


@dataclass(frozen=True)
class FetchOptions:
    dest: Path
    code: Optional[CodeSpec] = field(default_factory=CodeSpec)
    weights: Optional[WeightsSpec] = field(default_factory=WeightsSpec)
    pinned: Optional[Lock] = None  # --lock: expected hashes (and default pins) from a lock made earlier
    from_dir: Optional[Path] = None
    jobs: int = 8
    dry_run: bool = False
    kernels: Optional[tuple[str, str]] = None  # (repo_id, revision) of the native MXFP4 kernel to fetch too


@dataclass(frozen=True)
class Hooks:
    """Observers: ``log`` for one-line notes, ``progress(done, total)`` by bytes, ``git(stage, cur, max)``,
    ``file_done(path, files_done, files_total)`` as each downloaded file is complete."""

    log: Callable[[str], None] = lambda _m: None
    progress: Optional[ProgressFn] = None
    git: Optional[GitProgressFn] = None
    file_done: Callable[[str, int, int], None] = lambda _path, _done, _total: None
    retry_wait: float = 0.5  # first back-off after a transient failure (doubles each try)


@dataclass(frozen=True)
class ModelResult:
    source: str
    repo_id: str
    commit: str
    endpoint: str  # public: no credentials
    trust: str  # "lock" (hashes from --lock) | "endpoint" (hashes from the endpoint's metadata) | "from-dir"
    files: tuple[FileOutcome, ...]
    total_bytes: int
    transferred_bytes: int


@dataclass(frozen=True)
class KernelResult:
    """The native MXFP4 kernel repo fetched with the weights; file paths are relative to the model folder
    (``kernels/<name>/…``)."""

    repo_id: str
    revision: str
    commit: str
    endpoint: str  # public: no credentials
    files: tuple[FileOutcome, ...]
    total_bytes: int
    transferred_bytes: int


@dataclass(frozen=True)
class FetchResult:
    dest: Path
    dry_run: bool
    lock_path: Optional[Path]
    code: Optional[CodeResult]
    code_plan: Optional[dict]
    model: Optional[ModelResult]
    space: Optional[SpaceCheck]
    seconds: float
    kernels: Optional[KernelResult] = None  # the kernel repo fetched with the weights (gptoss_cli/kernels.py)


__all__ = ["CodeSpec", "FetchOptions", "FetchResult", "Hooks", "KernelResult", "ModelResult", "WeightsSpec"]
