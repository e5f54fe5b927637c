"""The wheels of a bundle: gptoss itself and every dependency, for the target Python and platform.

* gptoss's own wheel: ``--gptoss-wheel FILE``; else built from the checkout this gptoss runs from (``pip wheel
  --no-deps --no-build-isolation``: nothing downloaded); else ``pip download gptoss-cli==VERSION --no-deps``.
* the rest: ``pip download --only-binary=:all: [--python-version V --platform P …] GPTOSS.whl[serve] torch==2.13.0``
  into wheels/ — torch pinned (an unpinned torch is a multi-GB CUDA build), pip's own index and config used
  (``--index-url`` / ``--find-links`` add to them);
* or ``--wheels DIR``: the wheels are taken from DIR as they are (made with your own ``pip download``), nothing is
  downloaded.

Either way :func:`check_complete` then runs ``pip install --dry-run --no-index --find-links wheels/`` for the target
(pip's config set aside, as the installer does): a wheel missing for the offline machine is found here, not there.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional

from gptoss_cli.errors import CouldNotRun, UsageError

if TYPE_CHECKING:
    from gptoss_cli.bundle.create import BundleOptions

Log = Callable[[str], None]
DIST = "gptoss-cli"


def requirements(version: str, *, serve: bool, torch: str) -> tuple[str, ...]:
    """What the installer asks pip for (written to requirements.txt)."""
    if not serve:
        return (f"{DIST}=={version}",)
    from packaging.requirements import InvalidRequirement, Requirement

    try:
        req = Requirement(torch)
    except InvalidRequirement:
        raise UsageError(f"--torch {torch!r} is not a requirement (e.g. torch==2.13.0)") from None
    if req.name != "torch" or not any(s.operator in ("==", "===") for s in req.specifier):
        raise UsageError(f"--torch {torch!r} must pin torch with == (an unpinned torch is a multi-GB CUDA build)")
    return (f"{DIST}[serve]=={version}", str(req))


def target(options: "BundleOptions") -> Optional[dict]:
    if options.python_version is None and not options.platforms:
        return None
    return {"python": options.python_version, "platforms": list(options.platforms)}


def target_args(options: "BundleOptions") -> list[str]:
    """pip's target flags: ``--python-version`` / ``--platform`` (pip needs ``--only-binary=:all:`` with them)."""
    args: list[str] = []
    if options.python_version is not None:
        digits = options.python_version.replace(".", "")
        if not digits.isdigit():
            raise UsageError(f"--python {options.python_version!r} is not a Python version (e.g. 3.11)")
        args += ["--python-version", options.python_version, "--implementation", "cp", "--abi", f"cp{digits}",
                 "--abi", "abi3", "--abi", "none"]
    for platform in expand_platforms(options.platforms):
        args += ["--platform", platform]
    return args


_LEGACY = {"manylinux2014": 17, "manylinux2010": 12, "manylinux1": 5}


def expand_platforms(platforms: tuple[str, ...]) -> list[str]:
    """Each glibc tag with every older one a machine of that glibc also runs (pip takes ``--platform`` literally):
    ``manylinux_2_28_x86_64`` → ``manylinux_2_28_x86_64 … manylinux_2_17_x86_64 manylinux2014_x86_64 …``."""
    import re

    out: list[str] = []
    for tag in platforms:
        match = re.fullmatch(r"manylinux_2_(\d+)_(\w+)", tag) or re.fullmatch(r"(manylinux(?:2014|2010|1))_(\w+)", tag)
        if match is None:
            out.append(tag)
            continue
        first, arch = match.groups()
        glibc = int(first) if first.isdigit() else _LEGACY[first]
        out += [f"manylinux_2_{minor}_{arch}" for minor in range(glibc, 4, -1)]
        out += [f"{name}_{arch}" for name, minor in _LEGACY.items() if minor <= glibc]
    return list(dict.fromkeys(out))


def _source_root() -> Optional[Path]:
    """The checkout this gptoss runs from (pyproject.toml naming gptoss-cli beside the package), if any."""
    import gptoss_cli

    root = Path(gptoss_cli.__file__).resolve().parent.parent
    pyproject = root / "pyproject.toml"
    if pyproject.is_file() and f'name = "{DIST}"' in pyproject.read_text(encoding="utf-8"):
        return root
    return None


def pip(args: list[str], what: str, log: Log) -> None:
    argv = [sys.executable, "-m", "pip", *args]
    log(f"bundle: {what}")
    try:
        done = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    except OSError as exc:
        raise CouldNotRun(f"{what}: pip could not start: {exc}") from None
    if done.returncode != 0:
        tail = " | ".join(done.stdout.strip().splitlines()[-4:])
        raise CouldNotRun(f"{what} failed (pip exit {done.returncode}): {tail}",
                          hint="check the index (--index-url, --find-links) or pass --wheels DIR")


def gptoss_wheel(options: "BundleOptions", out: Path, log: Log) -> Path:
    from gptoss_cli import __version__

    out.mkdir(parents=True, exist_ok=True)
    if options.gptoss_wheel is not None:
        if not options.gptoss_wheel.is_file() or options.gptoss_wheel.suffix != ".whl":
            raise UsageError(f"--gptoss-wheel {options.gptoss_wheel}: not a wheel file")
        shutil.copy2(options.gptoss_wheel, out / options.gptoss_wheel.name)
        return out / options.gptoss_wheel.name
    root = _source_root()
    if root is not None:
        pip(["wheel", "--no-deps", "--no-build-isolation", "--quiet", "-w", str(out), str(root)],
            f"building the gptoss wheel from {root}", log)
    else:
        pip(["download", "--no-deps", "--quiet", "-d", str(out), *_index_args(options), f"{DIST}=={__version__}"],
            f"downloading {DIST}=={__version__}", log)
    found = sorted(out.glob(f"gptoss_cli-{__version__}-*.whl"))
    if not found:
        raise CouldNotRun(f"no gptoss_cli-{__version__} wheel was made in {out}")
    return found[0]


def _index_args(options: "BundleOptions") -> list[str]:
    args = ["--index-url", options.index_url] if options.index_url else []
    for link in options.find_links:
        args += ["--find-links", link]
    return args


def collect(options: "BundleOptions", reqs: tuple[str, ...], out: Path, log: Log) -> tuple[str, ...]:
    """Fill ``out`` with the wheels; return their names."""
    out.mkdir(parents=True, exist_ok=True)
    if options.wheels_dir is not None:
        given = sorted(options.wheels_dir.glob("*.whl"))
        if not given:
            raise UsageError(f"--wheels {options.wheels_dir}: no .whl files there")
        for wheel in given:
            shutil.copy2(wheel, out / wheel.name)
        if options.gptoss_wheel is not None or not list(out.glob("gptoss_cli-*.whl")):
            gptoss_wheel(options, out, log)
    else:
        own = gptoss_wheel(options, out, log)
        extra = "[serve]" if options.serve else ""
        wanted = [f"{own}{extra}", *reqs[1:]]
        pip(["download", "--quiet", "--only-binary=:all:", "-d", str(out), *target_args(options),
             *_index_args(options), *wanted], f"downloading the wheels for {' '.join(reqs)}", log)
    names = tuple(sorted(p.name for p in out.iterdir()))
    not_wheels = [n for n in names if not n.endswith(".whl")]
    if not_wheels:  # an sdist would need a compiler and build dependencies on the offline machine
        raise UsageError(f"--wheels holds files that are not wheels: {', '.join(not_wheels)}",
                         hint="a bundle carries wheels only: build those with pip wheel")
    check_complete(options, reqs, out, log)
    return names


def check_complete(options: "BundleOptions", reqs: tuple[str, ...], out: Path, log: Log) -> None:
    """Prove now, with the installer's own pip flags, that ``out`` alone satisfies ``reqs`` for the target."""
    import os
    import tempfile

    with tempfile.TemporaryDirectory(prefix="gptoss-bundle-check-") as tmp:
        req_file = Path(tmp) / "requirements.txt"
        req_file.write_text("\n".join(reqs) + "\n", encoding="utf-8")
        target = ["--only-binary=:all:", *target_args(options), "--target", str(Path(tmp) / "t")] \
            if target_args(options) else ["--ignore-installed"]
        argv = [sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--no-index", "--find-links",
                str(out), *target, "-r", str(req_file)]
        log("bundle: checking that the wheels alone satisfy " + " ".join(reqs))
        env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
        env.update(PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1")
        done = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    if done.returncode != 0:
        tail = " | ".join(line for line in done.stdout.strip().splitlines()[-3:])
        raise CouldNotRun(f"the bundle's wheels do not satisfy {' '.join(reqs)} without an index: {tail}",
                          hint="add the missing wheels to --wheels (or let bundle create download them)")


__all__ = ["check_complete", "collect", "gptoss_wheel", "requirements", "target", "target_args"]
