"""A real bare git repository in tmp (three commits, a lightweight and an annotated tag), cloned via file:// URLs.

Plain paths make git ignore ``--depth``, so tests always use ``file://`` URLs (hub-git-audit.md §3).
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid", "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.invalid", "GIT_CONFIG_NOSYSTEM": "1"}


def git(*args: str, cwd: Path) -> str:
    env = {**os.environ, **_ENV, "HOME": str(cwd)}
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True,
                          timeout=60).stdout.strip()


@dataclass(frozen=True)
class BareRepo:
    path: Path  # the bare repository
    commits: tuple[str, ...]  # oldest first; commits[-1] is main's tip
    tag_v1: str  # commit of tag v1.0 (lightweight)
    tag_v2: str  # commit of tag v2.0 (annotated)

    @property
    def url(self) -> str:
        return self.path.as_uri()


def make_bare_repo(root: Path, name: str = "gpt-oss") -> BareRepo:
    """``root/<name>`` bare repo; work happens in ``root/work-<name>``."""
    work = root / f"work-{name}"
    work.mkdir(parents=True)
    git("init", "-q", "-b", "main", cwd=work)
    commits = []
    for i in range(3):
        (work / "README.md").write_text(f"gpt-oss code, version {i}\n")
        (work / f"module_{i}.py").write_text(f"VALUE = {i}\n")
        git("add", "-A", cwd=work)
        git("commit", "-q", "-m", f"commit {i}", cwd=work)
        commits.append(git("rev-parse", "HEAD", cwd=work))
        if i == 0:
            git("tag", "v1.0", cwd=work)
        if i == 1:
            git("tag", "-a", "v2.0", "-m", "release 2", cwd=work)
    bare = root / name
    git("clone", "-q", "--bare", str(work), str(bare), cwd=root)
    return BareRepo(bare, tuple(commits), commits[0], commits[1])


@pytest.fixture
def bare_repo(tmp_path: Path) -> BareRepo:
    return make_bare_repo(tmp_path / "remote")


__all__ = ["BareRepo", "bare_repo", "git", "make_bare_repo"]
