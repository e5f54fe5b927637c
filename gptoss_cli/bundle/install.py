"""``bundle install``: check a bundle (folder or tar) against its manifest, then install it offline.

The work is done by :mod:`gptoss_cli.bundle.standalone` — the same code the bundle's ``install.sh`` runs — so the
two ways of installing cannot drift apart. This module adds what gptoss has around it: tar bundles (every member checked
first, ``untar.py``, then unpacked into a temporary folder beside DEST, removed afterwards), an optional check of the
manifest's own SHA-256 (carried by a second channel), gptoss's exception tree and a frozen result.

``gptoss up --bundle`` calls :func:`install_bundle` too.
"""

from __future__ import annotations

import contextlib
import shutil
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Optional

from gptoss_cli.bundle import standalone, untar
from gptoss_cli.errors import CheckFailed, CouldNotRun, UsageError

Log = Callable[[str], None]


@dataclass(frozen=True)
class InstallResult:
    bundle: Path
    dest: Path
    python: Path
    files_checked: int
    pip: bool
    gptoss_version: Optional[str]
    extras: tuple[str, ...]
    manifest_sha256: str
    seconds: float


@contextlib.contextmanager
def opened(bundle: Path, near: Path) -> Iterator[Path]:
    """The bundle folder: ``bundle`` itself, or a tar unpacked (safely) into a temporary folder beside ``near``."""
    bundle = Path(bundle)
    if bundle.is_dir():
        yield bundle
        return
    if not bundle.is_file():
        raise UsageError(f"{bundle}: no such bundle (a folder or a .tar made by `gptoss bundle create`)")
    near.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".gptoss-bundle-", dir=near))
    try:
        try:
            untar.extract(bundle, tmp)  # no absolute paths, no `..`, no links out, no devices
        except untar.UnsafeMember as exc:
            raise CheckFailed(f"{bundle} is refused: {exc}; nothing was installed") from None
        except (tarfile.TarError, OSError) as exc:
            raise CheckFailed(f"{bundle} cannot be unpacked: {exc}") from None
        tops = list(tmp.iterdir())
        yield tops[0] if len(tops) == 1 and tops[0].is_dir() else tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def install_bundle(bundle: Path, dest: Path, *, venv: Optional[Path] = None, python: Optional[Path] = None,
                   skip_pip: bool = False, manifest_sha256: Optional[str] = None,
                   log: Log = lambda _m: None) -> InstallResult:
    """Check every file of ``bundle``, pip-install its wheels (no index), import its DEST into ``dest``, verify.

    A changed, missing or unlisted file raises :class:`CheckFailed` (exit 1) before anything is installed.
    ``venv`` is created when missing; without it (and ``python``) the running interpreter's environment is used.
    """
    started = time.perf_counter()
    dest = Path(dest)
    with opened(bundle, dest.parent if dest.parent != Path("") else Path(".")) as root:
        digest = _check_manifest_digest(root, manifest_sha256)
        try:
            summary = standalone.install(root, dest, venv=venv, python=python, skip_pip=skip_pip, log=log)
        except standalone.BundleProblem as exc:
            raise CheckFailed(str(exc), hint="get the bundle again; do not edit it") from None
        except standalone.InstallFailed as exc:
            error = UsageError if exc.exit_code == 2 else CouldNotRun
            raise error(str(exc)) from None
    return InstallResult(Path(bundle), dest, Path(summary["python"]), summary["files_checked"], summary["pip"],
                         summary["gptoss_version"], tuple(summary["extras"]), digest,
                         time.perf_counter() - started)


def _check_manifest_digest(root: Path, expected: Optional[str]) -> str:
    path = root / standalone.MANIFEST_NAME
    if not path.is_file():
        raise CheckFailed(f"{path} is missing: this is not a gptoss bundle (or it is incomplete)")
    digest = standalone.sha256_file(path)
    if expected is not None and digest != expected.strip().lower():
        raise CheckFailed(f"{path} has SHA-256 {digest}, not the {expected} you were given",
                          hint="the manifest was changed or this is another bundle")
    return digest


__all__ = ["InstallResult", "install_bundle", "opened"]
