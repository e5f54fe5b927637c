"""Unpack a bundle tar safely on every Python 3.11, not only on 3.11.4+ where tarfile has its ``data`` filter.

Debian 12's python3 is 3.11.2 — the very machine an air-gapped install lands on — so the checks are ours: every
member is looked at before anything is written, and one that could write outside the folder (an absolute name, a
``..`` part, a name that resolves elsewhere), a symlink, a device or a FIFO refuses the whole archive. Hard links
are kept only when they point at a file unpacked before them. Modes lose set-id bits and group/other write, and
files are owned by whoever unpacks (as the ``data`` filter does); where that filter exists it runs as well.
"""

from __future__ import annotations

import copy
import os
import tarfile
from pathlib import Path, PurePosixPath

HAS_DATA_FILTER = hasattr(tarfile, "data_filter")
_OWNER = (getattr(os, "getuid", lambda: 0)(), getattr(os, "getgid", lambda: 0)())


class UnsafeMember(ValueError):
    """A tar member that must not be unpacked (the message names it)."""


def _inside(root: Path, name: str) -> bool:
    target = (root / name).resolve()
    return target == root or root in target.parents


def _checked_name(root: Path, name: str) -> str:
    path = PurePosixPath(name.replace("\\", "/"))
    if not name or path.is_absolute() or ".." in path.parts or (len(name) > 1 and name[1] == ":"):
        raise UnsafeMember(f"member {name!r} points outside the folder")
    if not _inside(root, name):
        raise UnsafeMember(f"member {name!r} resolves outside the folder")
    return name


def checked_members(tar: tarfile.TarFile, dest: Path) -> list[tarfile.TarInfo]:
    """Copies of ``tar``'s members, checked and made harmless for unpacking into ``dest``."""
    root = Path(dest).resolve()
    seen: set[str] = set()
    out: list[tarfile.TarInfo] = []
    for member in tar.getmembers():
        name = _checked_name(root, member.name)
        if member.islnk():
            target = _checked_name(root, member.linkname)
            if target not in seen:
                raise UnsafeMember(f"member {name!r} is a hard link to {target!r}, which is not unpacked before it")
        elif not (member.isdir() or member.isreg()):
            raise UnsafeMember(f"member {name!r} is a symlink or special file (a bundle holds only files and folders)")
        safe = copy.copy(member)
        mode = member.mode & 0o755
        safe.mode = (mode | 0o700) if member.isdir() else (mode | 0o600)
        safe.uid, safe.gid, safe.uname, safe.gname = _OWNER[0], _OWNER[1], "", ""
        seen.add(name)
        out.append(safe)
    return out


def extract(archive: Path, dest: Path) -> None:
    """Unpack ``archive`` into the existing folder ``dest``; raises :class:`UnsafeMember` (nothing written) or
    tarfile/OS errors."""
    with tarfile.open(archive) as tar:
        members = checked_members(tar, dest)
        if HAS_DATA_FILTER:
            tar.extractall(dest, members=members, filter="data")
        else:
            tar.extractall(dest, members=members)  # checked above: what the data filter would refuse is refused


__all__ = ["HAS_DATA_FILTER", "UnsafeMember", "checked_members", "extract"]
