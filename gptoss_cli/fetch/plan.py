"""From a remote listing to the exact files to fetch and the hash each must have (the trust decision).

Expected hashes come from ``--lock`` when given (a lock the team pinned earlier); the endpoint's metadata must then
agree with it, or the fetch stops with "mirror serves different content than the lock". Without a lock they come
from the endpoint: the LFS sha256 for large files, the git blob id for small ones (checked while streaming; the lock
then records the locally computed sha256 with ``hash_source = "git-blob"``), ModelScope's per-file sha256.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from gptoss_cli.errors import DiskSpaceError, IntegrityError, UsageError
from gptoss_cli.fetch.download import PlannedFile, part_name
from gptoss_cli.fetch.remote import RemoteSnapshot
from gptoss_cli.fetch.select import check_safe_paths, is_selected, refuse_pickle
from gptoss_cli.lockfile import Lock

DIFFERENT = "mirror serves different content than the lock"


def plan_from_remote(
    snapshot: RemoteSnapshot,
    *,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    pinned: Optional[Lock] = None,
    allow_pickle: bool = False,
) -> tuple[PlannedFile, ...]:
    """Select files and attach expected hashes; refuses unsafe paths, pickles, and disagreement with ``pinned``."""
    check_safe_paths((f.path for f in snapshot.files), f"{snapshot.public_endpoint}")
    if pinned is not None:
        planned = _plan_from_lock(snapshot, pinned, include, exclude)
    else:
        planned = _plan_from_metadata(snapshot, include, exclude)
    if not planned:
        raise UsageError(f"no files of {snapshot.repo_id}@{snapshot.commit[:12]} match the include/exclude patterns",
                         hint="check --include/--exclude (globs on the path, e.g. '*.json')")
    refuse_pickle((p.path for p in planned), allow_pickle)
    return planned


def _plan_from_metadata(snapshot: RemoteSnapshot, include: Sequence[str],
                        exclude: Sequence[str]) -> tuple[PlannedFile, ...]:
    out = []
    for f in snapshot.files:
        if not is_selected(f.path, include, exclude):
            continue
        if f.sha256:
            source = "modelscope" if snapshot.source == "modelscope" else "lfs"
            out.append(PlannedFile(f.path, f.size, f.sha256, None, source, snapshot.url(f.path)))
        elif f.git_oid:
            out.append(PlannedFile(f.path, f.size, None, f.git_oid, "git-blob", snapshot.url(f.path)))
        else:
            raise IntegrityError(f"{snapshot.public_endpoint} lists no hash for {f.path}",
                                 hint="pass --lock with a lock made from a trusted source")
    return tuple(out)


def _plan_from_lock(snapshot: RemoteSnapshot, pinned: Lock, include: Sequence[str],
                    exclude: Sequence[str]) -> tuple[PlannedFile, ...]:
    model = pinned.model
    if (model is not None and model.source == snapshot.source and model.repo_id == snapshot.repo_id
            and model.commit != snapshot.commit):
        raise IntegrityError(f"{DIFFERENT}: {snapshot.repo_id} resolved to commit {snapshot.commit}, "
                             f"the lock pins {model.commit}", hint="drop --revision to use the lock's commit")
    out = []
    for entry in pinned.files:
        if (include or exclude) and not is_selected(entry.path, include, exclude):
            continue
        remote = snapshot.file(entry.path)
        if remote is None:
            raise IntegrityError(f"{DIFFERENT}: {entry.path} is not listed by {snapshot.public_endpoint}")
        if remote.size != entry.size:
            raise IntegrityError(f"{DIFFERENT}: {entry.path} is {remote.size} bytes there, {entry.size} in the lock")
        if remote.sha256 and remote.sha256 != entry.sha256:
            raise IntegrityError(f"{DIFFERENT}: {entry.path} has sha256 {remote.sha256} there, "
                                 f"{entry.sha256} in the lock")
        out.append(PlannedFile(entry.path, entry.size, entry.sha256, None, entry.hash_source,
                               snapshot.url(entry.path)))
    return tuple(out)


@dataclass(frozen=True)
class SpaceCheck:
    path: Path
    needed: int
    free: int

    @property
    def enough(self) -> bool:
        return self.needed <= self.free


def existing_ancestor(path: Path) -> Path:
    path = Path(os.path.abspath(path))
    while not path.exists() and path.parent != path:
        path = path.parent
    return path


def bytes_needed(files: Sequence[PlannedFile], model_dir: Path, partial_dir: Path) -> int:
    """Bytes still to write: complete files of the right size count 0, partial downloads count what is missing."""
    needed = 0
    for pf in files:
        target = model_dir / pf.path
        try:
            if target.is_file() and target.stat().st_size == pf.size:
                continue
        except OSError:
            pass
        try:
            have = (partial_dir / part_name(pf)).stat().st_size
        except OSError:
            have = 0
        needed += max(0, pf.size - min(have, pf.size))
    return needed


def check_space(dest: Path, needed: int) -> SpaceCheck:
    where = existing_ancestor(dest)
    return SpaceCheck(where, needed, shutil.disk_usage(where).free)


def require_space(dest: Path, needed: int) -> SpaceCheck:
    """DiskSpaceError (exit 3, needed vs free bytes) when the files will not fit."""
    space = check_space(dest, needed)
    if not space.enough:
        raise DiskSpaceError(str(space.path), space.needed, space.free)
    return space


__all__ = ["DIFFERENT", "SpaceCheck", "bytes_needed", "check_space", "existing_ancestor", "plan_from_remote",
           "require_space"]
