"""Which remote files to take, and whether their paths and formats are safe to write.

* Default selection (no ``--include``): top-level ``*.json``, ``*.safetensors``, ``tokenizer*`` and
  ``chat_template.jinja`` — what transformers needs to serve. ``original/`` and ``metal/`` (two more ~13 GB weight
  copies in gpt-oss-20b) are left out because defaults never reach into sub-folders.
* ``--include``/``--exclude`` are ``fnmatch`` globs on the full path, as in ``hf download`` (``*`` also matches
  ``/``). Excludes always win.
* Paths that are absolute, contain ``..``, ``.``, empty components or backslashes, or that would land outside the
  model folder through a symlink, are refused.
* Pickle-based weights (``gptoss_cli.weights.PICKLE_SUFFIXES``) can run code when loaded: refused unless
  ``allow_pickle``.
"""

from __future__ import annotations

import fnmatch
from pathlib import Path
from typing import Iterable, Sequence

from gptoss_cli.dest import inside
from gptoss_cli.errors import IntegrityError, UsageError
from gptoss_cli.lockfile import check_relpath
from gptoss_cli.weights import PICKLE_SUFFIXES, is_pickle

DEFAULT_INCLUDE = ("*.json", "*.safetensors", "tokenizer*", "chat_template.jinja")


def matches(path: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(path, p) for p in patterns)


def is_selected(path: str, include: Sequence[str], exclude: Sequence[str]) -> bool:
    """Whether ``path`` is taken: explicit includes match anywhere; the default set only at the top level."""
    if exclude and matches(path, exclude):
        return False
    if include:
        return matches(path, include)
    return "/" not in path and matches(path, DEFAULT_INCLUDE)


def check_safe_paths(paths: Iterable[str], what: str = "the endpoint") -> None:
    """Refuse any unsafe or repeated relative path (IntegrityError, exit 3): a mirror must not choose where we write."""
    seen: set[str] = set()
    for path in paths:
        if path in seen:
            raise IntegrityError(f"refusing file {path!r} listed twice by {what}",
                                 hint="the mirror may be malicious or broken; nothing was written")
        seen.add(path)
        why = check_relpath(path)
        if why:
            raise IntegrityError(f"refusing file {path!r} listed by {what}: its path {why}",
                                 hint="the mirror may be malicious or broken; nothing was written")


def safe_target(root: Path, rel: str) -> Path:
    """``root/rel`` (``root`` is ``DEST/model``) after checking the string and that no symlink, ``root`` itself
    included, leads it outside DEST (:func:`gptoss_cli.dest.inside`)."""
    why = check_relpath(rel)
    if why:
        raise IntegrityError(f"refusing file {rel!r}: its path {why}")
    return inside(root.parent, root / rel)


def pickle_files(paths: Iterable[str]) -> list[str]:
    return [p for p in paths if is_pickle(p)]


def refuse_pickle(paths: Iterable[str], allow_pickle: bool) -> None:
    if allow_pickle:
        return
    found = pickle_files(paths)
    if found:
        shown = ", ".join(found[:3]) + (f" and {len(found) - 3} more" if len(found) > 3 else "")
        raise UsageError(
            f"refusing pickle-based weight files ({shown}): loading them can run arbitrary code",
            hint="narrow --include/--exclude to safetensors, or pass --allow-pickle if you trust them",
        )


__all__ = [
    "DEFAULT_INCLUDE",
    "PICKLE_SUFFIXES",
    "check_safe_paths",
    "is_selected",
    "matches",
    "pickle_files",
    "refuse_pickle",
    "safe_target",
]
