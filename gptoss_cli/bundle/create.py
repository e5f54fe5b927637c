"""``bundle create``: everything an air-gapped machine needs, in one folder (or tar) with a hash for every file.

Layout of a bundle::

    manifest.json        sizes and SHA-256 of every other file (see manifest.py)
    install.sh           ``sh install.sh --dest DIR [--venv DIR]``: needs only python3
    install.py           the stdlib-only installer (gptoss_cli/bundle/standalone.py, verbatim)
    requirements.txt     what pip installs from wheels/ (gptoss-cli[serve]==V, torch==2.13.0)
    wheels/              gptoss and every dependency, for the target Python and platform
    dest/                the DEST: gptoss.lock.json, model/ (locked files only), code/.git (the pinned checkout)
    vocab/               o200k_base.tiktoken (harmony's vocabulary; vLLM needs it offline)
    kernels/             optional: the MXFP4 kernels (an HF cache folder, --kernels)
    osv/                 optional: an OSV database snapshot for ``gptoss audit --osv-db`` (--osv-db)

The folder is assembled in ``OUT.partial`` next to OUT (hard links where the filesystem allows) and renamed when
complete; ``OUT.tar`` / ``OUT.tar.gz`` / ``OUT.tgz`` are written as a tar of that folder instead.
"""

from __future__ import annotations

import os
import shutil
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from gptoss_cli.bundle import wheels as _wheels
from gptoss_cli.bundle.manifest import BundleFile, empty_dirs, scan, write_manifest
from gptoss_cli.bundle.standalone import sha256_file
from gptoss_cli.errors import CheckFailed, IntegrityError, UsageError

VOCAB_NAME = "o200k_base.tiktoken"
VOCAB_SHA256 = "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d"
TAR_SUFFIXES = {".tar": "w", ".tar.gz": "w:gz", ".tgz": "w:gz"}
INSTALL_SH = """#!/bin/sh
# Check this gptoss bundle against manifest.json, install it offline and import its model (needs only python3).
#   sh install.sh --dest /srv/gpt-oss --venv /opt/gptoss      (sh install.sh --help for the options)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
exec "${PYTHON:-python3}" "$here/install.py" "$@"
"""

Log = Callable[[str], None]


@dataclass(frozen=True)
class BundleOptions:
    out: Path
    dest: Path
    vocab: Optional[Path] = None
    python_version: Optional[str] = None  # e.g. "3.11"; None: this interpreter's
    platforms: tuple[str, ...] = ()  # pip --platform tags; empty: this machine's
    serve: bool = True  # the serve extra and the pinned torch
    torch: str = "torch==2.13.0"
    wheels_dir: Optional[Path] = None  # take wheels from here instead of running pip download
    gptoss_wheel: Optional[Path] = None
    find_links: tuple[str, ...] = ()
    index_url: Optional[str] = None
    kernels: Optional[Path] = None
    osv_db: Optional[Path] = None


@dataclass(frozen=True)
class BundleResult:
    path: Path
    format: str  # "dir" or "tar"
    manifest_sha256: str
    files: int
    total_bytes: int
    requirements: tuple[str, ...]
    wheels: tuple[str, ...]
    parts: dict = field(default_factory=dict)
    seconds: float = 0.0


def out_format(out: Path) -> Optional[str]:
    """The tarfile mode for OUT's suffix, or None for a folder."""
    name = out.name.lower()
    return next((mode for suffix, mode in TAR_SUFFIXES.items() if name.endswith(suffix)), None)


def find_vocab(given: Optional[Path]) -> Path:
    """``--vocab``, or the vocabulary shipped as package data; its SHA-256 must be o200k_base's."""
    if given is None:
        import gptoss_cli

        shipped = sorted(Path(gptoss_cli.__file__).parent.rglob(VOCAB_NAME))
        if not shipped:
            raise UsageError(f"no {VOCAB_NAME} ships with this gptoss: pass --vocab FILE",
                             hint="the file is at https://openaipublic.blob.core.windows.net/encodings/"
                                  f"{VOCAB_NAME} (SHA-256 {VOCAB_SHA256[:8]}…{VOCAB_SHA256[-4:]})")
        given = shipped[0]
    if not given.is_file():
        raise UsageError(f"--vocab {given}: no such file")
    if sha256_file(given) != VOCAB_SHA256:
        raise IntegrityError(f"{given} is not o200k_base.tiktoken (its SHA-256 differs)",
                             hint=f"expected {VOCAB_SHA256}")
    return given


def _place(src: Path, dst: Path) -> None:
    """Hard link ``src`` at ``dst`` (a copy across filesystems or where links are refused)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _place_tree(src: Path, dst: Path, scrub: bool = False) -> int:
    """Every regular file under ``src`` at the same place under ``dst``; symlinks are refused. ``scrub``: text
    files outside ``objects/`` (a git folder's config, FETCH_HEAD, reflogs) lose any ``user:token@`` in URLs."""
    count = 0
    for dirpath, _dirs, names in os.walk(src):
        (dst / Path(dirpath).relative_to(src)).mkdir(parents=True, exist_ok=True)  # git needs its empty refs/
        for name in names:
            path = Path(dirpath) / name
            if path.is_symlink():
                raise UsageError(f"{path} is a symlink: a bundle carries only regular files")
            rel = path.relative_to(src)
            if scrub and rel.parts[0] != "objects" and _scrubbed_copy(path, dst / rel):
                count += 1
                continue
            _place(path, dst / rel)
            count += 1
    return count


def _scrubbed_copy(path: Path, dst: Path) -> bool:
    """Write ``path`` to ``dst`` without URL credentials if it has any (True), else leave it to the caller."""
    from gptoss_cli.redact import scrub_userinfo

    if path.stat().st_size > 1024 * 1024:
        return False
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    clean = scrub_userinfo(text)
    if clean == text:
        return False
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_text(clean, encoding="utf-8")
    return True


def stage_dest(dest: Path, staging: Path, log: Log) -> tuple[dict, dict[str, str]]:
    """DEST after ``verify`` passed: the lock, the locked model files and code/.git. Returns (summary, hashes)."""
    from gptoss_cli.lockfile import CODE_DIRNAME, LOCK_NAME, MODEL_DIRNAME, read_lock
    from gptoss_cli.verify import verify_lock

    result = verify_lock(dest / LOCK_NAME, model_dir=dest / MODEL_DIRNAME)
    if not result.ok:
        raise CheckFailed(f"DEST {dest} does not match its lock: {result.summary()}",
                          hint="run `gptoss verify` and `gptoss fetch` to repair it before bundling")
    log(f"bundle: {dest} verified ({result.summary()})")
    lock = read_lock(dest / LOCK_NAME)
    _place(dest / LOCK_NAME, staging / "dest" / LOCK_NAME)
    known = {}
    for entry in lock.files:
        _place(dest / MODEL_DIRNAME / entry.path, staging / "dest" / MODEL_DIRNAME / entry.path)
        known[f"dest/{MODEL_DIRNAME}/{entry.path}"] = entry.sha256
    git_files = 0
    if lock.code is not None and (dest / CODE_DIRNAME / ".git").is_dir():
        git_files = _place_tree(dest / CODE_DIRNAME / ".git", staging / "dest" / CODE_DIRNAME / ".git", scrub=True)
    summary = {"model": lock.model.repo_id if lock.model else None,
               "model_commit": lock.model.commit if lock.model else None,
               "code_commit": lock.code.commit if lock.code else None,
               "model_files": len(lock.files), "model_bytes": sum(e.size for e in lock.files),
               "code_git_files": git_files}
    return summary, known


def _stage_extras(options: BundleOptions, staging: Path, vocab: Path) -> dict:
    parts: dict = {"vocab": f"vocab/{VOCAB_NAME}", "kernels": None, "osv": None}
    _place(vocab, staging / "vocab" / VOCAB_NAME)
    if options.kernels is not None:
        if not options.kernels.is_dir():
            raise UsageError(f"--kernels {options.kernels}: not a folder (give the HF cache folder of the kernels)")
        parts["kernels"] = {"files": _place_tree(options.kernels, staging / "kernels")}
    if options.osv_db is not None:
        from gptoss_cli.audit.osv_local import load_osv_db

        load_osv_db(options.osv_db).close()  # refuses what `gptoss audit --osv-db` could not read
        name = options.osv_db.name
        if options.osv_db.is_dir():
            _place_tree(options.osv_db, staging / "osv" / name)
        else:
            _place(options.osv_db, staging / "osv" / name)
        parts["osv"] = f"osv/{name}"
    return parts


def _write_installer(staging: Path, requirements: tuple[str, ...]) -> None:
    from gptoss_cli.bundle import standalone

    shutil.copyfile(standalone.__file__, staging / "install.py")
    (staging / "install.sh").write_text(INSTALL_SH, encoding="utf-8")
    os.chmod(staging / "install.sh", 0o755)
    (staging / "requirements.txt").write_text("\n".join(requirements) + "\n", encoding="utf-8")


def _check_out(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"{out} already exists: choose a new OUT (a bundle is never written over another)")
    if not out.parent.is_dir():
        raise UsageError(f"{out.parent} does not exist: create it first")


def create_bundle(options: BundleOptions, log: Log = lambda _m: None) -> BundleResult:
    """Assemble the bundle described by ``options`` and return what went into it."""
    from gptoss_cli import __version__
    from gptoss_cli.lockfile import utc_now

    started = time.perf_counter()
    out = Path(options.out)
    _check_out(out)
    vocab = find_vocab(options.vocab)
    mode = out_format(out)
    staging = out.with_name(out.name + ".partial")
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir()
    try:
        dest_summary, known = stage_dest(Path(options.dest), staging, log)
        parts = {"dest": dest_summary, **_stage_extras(options, staging, vocab)}
        requirements = _wheels.requirements(__version__, serve=options.serve, torch=options.torch)
        wheel_names = _wheels.collect(options, requirements, staging / "wheels", log)
        parts["wheels"] = list(wheel_names)
        _write_installer(staging, requirements)
        files = scan(staging, known)
        meta = {"created_at": utc_now(), "gptoss_version": __version__, "requirements": list(requirements),
                "target": _wheels.target(options), "parts": parts, "dirs": empty_dirs(staging)}
        digest = write_manifest(staging, files, meta)
        path = _finish(staging, out, mode)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    log(f"bundle: {len(files)} files written to {path}; manifest sha256 {digest}")
    return BundleResult(path, "tar" if mode else "dir", digest, len(files) + 1,
                        sum(f.size for f in files), requirements, wheel_names, parts,
                        time.perf_counter() - started)


def _finish(staging: Path, out: Path, mode: Optional[str]) -> Path:
    if mode is None:
        if out.exists():
            out.rmdir()  # an empty folder (checked above)
        os.replace(staging, out)
        return out
    top = out.name.split(".")[0] or "gptoss-bundle"
    tmp = out.with_name(out.name + ".tmp")
    with tarfile.open(tmp, mode) as tar:
        tar.add(staging, arcname=top)
    os.replace(tmp, out)
    shutil.rmtree(staging)
    return out


__all__ = ["BundleFile", "BundleOptions", "BundleResult", "VOCAB_SHA256", "create_bundle", "find_vocab"]
