"""``manifest.json``: every file of a bundle with its size and SHA-256, plus what the bundle holds and is for.

::

    {
      "schema": "gptoss-bundle/1",
      "created_at": "2026-12-04T19:00:00Z",
      "gptoss_version": "0.1.0",
      "target": {"python": "3.11", "platforms": ["manylinux_2_28_x86_64"]},   # null: the creating machine's own
      "requirements": ["gptoss-cli[serve]==0.1.0", "torch==2.13.0"],         # also requirements.txt
      "parts": {"dest": {...lock summary…}, "wheels": ["...whl"], "vocab": "vocab/o200k_base.tiktoken",
                "kernels": "kernels" | null, "osv": "osv/all.zip" | null},
      "dirs": ["dest/code/.git/refs/tags", ...],     # empty folders, made again where a copy dropped them
      "files": [{"path": "dest/gptoss.lock.json", "size": 1234, "sha256": "<64 hex>"}, ...]   # sorted by path
    }

The manifest does not list itself; its own SHA-256 is printed by ``gptoss bundle create`` (and in ``--json``), so it
can travel by a second channel and be checked with ``gptoss bundle install --manifest-sha256``. The check itself
lives in :mod:`gptoss_cli.bundle.standalone`, the stdlib-only installer that ships inside every bundle.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional

from gptoss_cli.bundle.standalone import MANIFEST_NAME, SCHEMA, sha256_file


@dataclass(frozen=True)
class BundleFile:
    path: str
    size: int
    sha256: str


def scan(root: Path, known: Optional[Mapping[str, str]] = None) -> tuple[BundleFile, ...]:
    """Every regular file under ``root`` (the manifest excluded), hashed unless ``known`` gives its SHA-256."""
    known = known or {}
    files = []
    for dirpath, dirs, names in os.walk(root):
        dirs.sort()
        for name in sorted(names):
            path = Path(dirpath) / name
            rel = path.relative_to(root).as_posix()
            if rel == MANIFEST_NAME:
                continue
            files.append(BundleFile(rel, path.stat().st_size, known.get(rel) or sha256_file(path)))
    return tuple(sorted(files, key=lambda f: f.path))


def empty_dirs(root: Path) -> list[str]:
    """The empty folders under ``root`` (git's ``refs/heads`` and the like): copies often drop them."""
    return sorted(Path(d).relative_to(root).as_posix() for d, dirs, names in os.walk(root)
                  if not dirs and not names and Path(d) != root)


def write_manifest(root: Path, files: tuple[BundleFile, ...], meta: Mapping[str, Any]) -> str:
    """Write ``root/manifest.json`` (``meta`` plus the file list); return the manifest's own SHA-256."""
    doc = {"schema": SCHEMA, **meta, "files": [{"path": f.path, "size": f.size, "sha256": f.sha256} for f in files]}
    path = root / MANIFEST_NAME
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return sha256_file(path)


__all__ = ["MANIFEST_NAME", "SCHEMA", "BundleFile", "empty_dirs", "scan", "write_manifest"]
