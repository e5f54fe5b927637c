"""The bundle's own installer: standard library only, copied verbatim into every bundle as ``install.py``.

On the air-gapped machine nothing but ``python3`` is needed (``sh install.sh`` runs this file). Steps, each only
after the one before it succeeded:

1. **check** every file of the bundle against ``manifest.json`` (size and SHA-256): a changed, missing or unlisted
   file refuses the install (exit 1) before anything from the bundle is used;
2. **pip**: ``pip install --no-index --find-links wheels/ -r requirements.txt`` into ``--venv`` (created when
   missing) or the running interpreter, with pip's config files and ``PIP_*`` variables set aside so nothing but the
   bundle's wheels can be installed;
3. **import** DEST with the freshly installed ``gptoss fetch --from-dir`` (copies or links, re-hashed against the
   lock), then copy the vocabulary, kernels and OSV snapshot next to it (hash-checked again after the copy);
4. **verify** with ``gptoss verify DEST``.

``gptoss bundle install`` runs the same code (``gptoss_cli.bundle.install`` imports this module). Exit codes follow
gptoss: 0 ok, 1 the bundle failed its check, 2 usage, 3 could not run.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path, PurePosixPath
from typing import Callable, Iterable, Optional

MANIFEST_NAME = "manifest.json"
SCHEMA = "gptoss-bundle/1"
READ_SIZE = 1024 * 1024
# Bundle parts copied next to DEST after the import: bundle folder -> folder under DEST.
EXTRAS = {"vocab": "vocab", "kernels": "kernels", "osv": "osv"}

Log = Callable[[str], None]


class BundleProblem(Exception):
    """The bundle failed its check (exit 1): ``problems`` lists each bad file."""

    exit_code = 1

    def __init__(self, message: str, problems: Iterable[str] = ()) -> None:
        super().__init__(message)
        self.problems = tuple(problems)


class InstallFailed(Exception):
    """A step could not run (exit 3) or was asked wrongly (exit 2)."""

    def __init__(self, message: str, exit_code: int = 3) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def sha256_file(path: Path) -> str:
    sha = hashlib.sha256()
    buf = bytearray(READ_SIZE)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as fh:
        while True:
            n = fh.readinto(buf)
            if not n:
                return sha.hexdigest()
            sha.update(view[:n])


def safe_relpath(path: str) -> Optional[str]:
    """``path`` if it is a plain relative POSIX path that stays inside the bundle, else None."""
    pure = PurePosixPath(path)
    if not path or pure.is_absolute() or "\\" in path or any(p in ("", ".", "..") for p in path.split("/")):
        return None
    return str(pure)


def read_manifest(bundle: Path) -> dict:
    path = bundle / MANIFEST_NAME
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BundleProblem(f"{path} is missing: this is not a gptoss bundle (or it is incomplete)") from None
    except (OSError, ValueError) as exc:
        raise BundleProblem(f"{path} cannot be read as JSON: {exc}") from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA or not isinstance(data.get("files"), list):
        raise BundleProblem(f"{path} is not a {SCHEMA} manifest")
    return data


def bundle_files(bundle: Path) -> set[str]:
    """Every path under ``bundle`` (relative, POSIX) except the manifest; symlinks count as files (and fail)."""
    found = set()
    for root, dirs, files in os.walk(bundle):
        rel_root = Path(root).relative_to(bundle)
        for name in files + [d for d in dirs if os.path.islink(os.path.join(root, d))]:
            found.add((rel_root / name).as_posix())
    found.discard(MANIFEST_NAME)
    return found


def check_bundle(bundle: Path, log: Log = lambda _m: None) -> dict:
    """The manifest, after every listed file matched its size and SHA-256 and no unlisted file was found."""
    manifest = read_manifest(bundle)
    problems: list[str] = []
    listed: set[str] = set()
    for i, entry in enumerate(manifest["files"]):
        rel = safe_relpath(entry.get("path", "")) if isinstance(entry, dict) else None
        if rel is None or not isinstance(entry.get("sha256"), str) or not isinstance(entry.get("size"), int):
            raise BundleProblem(f"manifest entry {i} is malformed (needs a relative path, size and sha256)")
        listed.add(rel)
        path = bundle / rel
        if path.is_symlink() or not path.is_file():
            problems.append(f"{rel}: missing")
        elif path.stat().st_size != entry["size"]:
            problems.append(f"{rel}: size {path.stat().st_size}, expected {entry['size']}")
        elif sha256_file(path) != entry["sha256"]:
            problems.append(f"{rel}: sha256 does not match the manifest")
    problems += [f"{rel}: not in the manifest" for rel in sorted(bundle_files(bundle) - listed)]
    for rel in manifest.get("dirs") or []:  # empty folders (git's refs/…) that a copy may have dropped
        if safe_relpath(rel) is None:
            raise BundleProblem(f"manifest folder {rel!r} is not a relative path inside the bundle")
        if not problems and not (bundle / rel).is_dir():
            (bundle / rel).mkdir(parents=True)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise BundleProblem(f"bundle {bundle} failed its check: {problems[0]}{more}; nothing was installed",
                            problems)
    log(f"bundle: {len(listed)} files match the manifest")
    return manifest


def _pip_env() -> dict:
    """The environment for pip: no config file, no PIP_* variable (no index, no extra find-links) but ours."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1")
    return env


def _run(argv: list, what: str, log: Log, env: Optional[dict] = None) -> None:
    log("bundle: " + what)
    try:
        proc = subprocess.run(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    except OSError as exc:
        raise InstallFailed(f"{what} could not start: {exc}") from None
    if proc.returncode != 0:
        tail = " | ".join(proc.stdout.strip().splitlines()[-3:])
        raise InstallFailed(f"{what} failed (exit {proc.returncode}): {tail}")


def venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def pip_install(bundle: Path, python: Path, log: Log) -> None:
    req = bundle / "requirements.txt"
    argv = [str(python), "-m", "pip", "install", "--no-index", "--find-links", str(bundle / "wheels"),
            "--no-cache-dir", "-r", str(req)]
    _run(argv, f"pip install --no-index from {bundle / 'wheels'}", log, env=_pip_env())


def _copy_extras(bundle: Path, dest: Path, manifest: dict, log: Log) -> list:
    """Copy vocab/, kernels/, osv/ under DEST and check every copied file's hash again."""
    copied = []
    for entry in manifest["files"]:
        top, _, rest = entry["path"].partition("/")
        if top not in EXTRAS or not rest:
            continue
        target = dest / EXTRAS[top] / rest
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".part")
        shutil.copyfile(bundle / entry["path"], tmp)
        if sha256_file(tmp) != entry["sha256"]:
            tmp.unlink()
            raise BundleProblem(f"{entry['path']} changed while it was copied to {target}")
        os.replace(tmp, target)
        copied.append(str(target))
    if copied:
        log(f"bundle: {len(copied)} files copied under {dest} (vocab/, kernels/, osv/)")
    return copied


def install(bundle: Path, dest: Path, *, venv: Optional[Path] = None, python: Optional[Path] = None,
            skip_pip: bool = False, log: Log = lambda _m: None) -> dict:
    """Check, pip-install, import DEST, verify. Returns a plain summary dict; raises BundleProblem/InstallFailed."""
    bundle, dest = Path(bundle), Path(dest)
    manifest = check_bundle(bundle, log)
    if venv is not None:
        python = venv_python(venv)
        if not python.exists():
            _run([sys.executable, "-m", "venv", str(venv)], f"create the virtual environment {venv}", log)
    python = Path(python or sys.executable)
    if not skip_pip:
        pip_install(bundle, python, log)
    gptoss = [str(python), "-m", "gptoss_cli"]
    if (bundle / "dest").is_dir():
        _run([*gptoss, "-q", "fetch", "--from-dir", str(bundle / "dest"), "--dest", str(dest)],
             f"import {bundle / 'dest'} into {dest} (gptoss fetch --from-dir)", log)
    dest.mkdir(parents=True, exist_ok=True)
    extras = _copy_extras(bundle, dest, manifest, log)
    if (dest / "gptoss.lock.json").exists():
        _run([*gptoss, "-q", "verify", str(dest)], f"gptoss verify {dest}", log)
    return {"bundle": str(bundle), "dest": str(dest), "python": str(python), "files_checked": len(manifest["files"]),
            "pip": not skip_pip, "extras": extras, "gptoss_version": manifest.get("gptoss_version")}


def main(argv: Optional[list] = None) -> int:
    here = Path(__file__).resolve().parent
    parser = argparse.ArgumentParser(prog="install.sh", description="Check this gptoss bundle, install it "
                                     "offline (pip --no-index) and import its model into DEST.")
    parser.add_argument("--dest", type=Path, default=Path("gpt-oss"), help="where the model goes (./gpt-oss)")
    parser.add_argument("--venv", type=Path, help="virtual environment to create or use (default: this python)")
    parser.add_argument("--check-only", action="store_true", help="only check the files against the manifest")
    args = parser.parse_args(argv)
    log = lambda m: print(m, file=sys.stderr)  # noqa: E731
    try:
        if args.check_only:
            check_bundle(here, log)
        else:
            summary = install(here, args.dest, venv=args.venv, log=log)
            print(f"installed gptoss {summary['gptoss_version']} into {summary['python']}; model in {args.dest}, "
                  f"verified")
    except (BundleProblem, InstallFailed) as exc:
        print(f"install: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
