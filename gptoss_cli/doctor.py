"""``gptoss doctor``: what this machine has, what is missing, as a frozen report."""

from __future__ import annotations

import importlib.metadata as md
import importlib.util
import platform
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from gptoss_cli.config import network_environment
from gptoss_cli.extras import SERVE_DISTRIBUTIONS, install_hint

CORE_PACKAGES = ("typer", "rich", "httpx", "huggingface_hub", "GitPython", "pip-audit")
SERVE_PACKAGES = tuple(SERVE_DISTRIBUTIONS.values())
WEIGHTS_BYTES_20B = 13_800_000_000


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # "ok" | "warn" | "fail"
    detail: str
    required: bool


@dataclass(frozen=True)
class DoctorReport:
    checks: tuple[Check, ...]

    @property
    def ok(self) -> bool:
        return not any(c.status == "fail" for c in self.checks)

    def to_dict(self) -> dict:
        return {
            "ok": self.ok,
            "checks": [
                {"name": c.name, "status": c.status, "detail": c.detail, "required": c.required} for c in self.checks
            ],
        }


def _version(dist: str) -> str | None:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return None


def _python_check() -> Check:
    ok = sys.version_info >= (3, 11)
    detail = f"{platform.python_version()} ({sys.executable})"
    return Check("python", "ok" if ok else "fail", detail if ok else f"{detail}: need >= 3.11", True)


def _package_checks() -> list[Check]:
    checks = []
    for dist in CORE_PACKAGES:
        v = _version(dist)
        checks.append(Check(f"package {dist}", "ok" if v else "fail", v or "not installed", True))
    for dist in SERVE_PACKAGES:
        v = _version(dist)
        detail = v or f"not installed; gptoss serve needs it: {install_hint([dist])}"
        checks.append(Check(f"package {dist}", "ok" if v else "warn", detail, False))
    return checks


def _torch_check() -> Check:
    if importlib.util.find_spec("torch") is None:
        return Check("torch/cuda", "warn", f"torch not installed, so no serving: {install_hint(['torch'])}", False)
    try:
        import torch
    except Exception as exc:  # noqa: BLE001 - a broken torch install is a finding, not a crash
        return Check("torch/cuda", "warn", f"torch fails to import: {type(exc).__name__}: {exc}", False)
    if not torch.cuda.is_available():
        return Check("torch/cuda", "ok", f"torch {torch.__version__}, CUDA not available (CPU only)", False)
    gpus = []
    for i in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(i)
        gpus.append(f"{props.name} {props.total_memory / 2**30:.1f} GiB")
    return Check("torch/cuda", "ok", f"torch {torch.__version__}, CUDA {torch.version.cuda}: " + "; ".join(gpus), False)


def _mxfp4_check(env: Mapping[str, str] | None) -> Check:
    """Which path gpt-oss's MXFP4 experts would take under ``gptoss serve --mxfp4 auto`` on this machine."""
    if importlib.util.find_spec("torch") is None or importlib.util.find_spec("transformers") is None:
        return Check("mxfp4 path", "warn", "no torch/transformers: nothing to serve with", False)
    try:
        import torch

        from gptoss_cli.config import hf_hub_cache, local_kernels
        from gptoss_cli.serve.engines.transformers.plan import native_status

        device = "cuda" if torch.cuda.is_available() else "cpu"
        status = native_status(device, hf_hub_cache(env), local_kernels(env))
    except Exception as exc:  # noqa: BLE001 - a broken install is a finding, not a crash
        return Check("mxfp4 path", "warn", f"cannot tell: {type(exc).__name__}: {exc}", False)
    if status.ok:
        return Check("mxfp4 path", "ok", f"native kernels ({status.reason})", False)
    return Check("mxfp4 path", "ok", f"packed experts (pure torch) or dequantised, whichever fits; native kernels "
                                     f"not available: {status.reason}", False)


def _disk_check(target: Path) -> Check:
    probe = target.resolve()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    detail = f"{free / 1e9:.1f} GB free at {probe} (gpt-oss-20b weights need ~{WEIGHTS_BYTES_20B / 1e9:.1f} GB)"
    return Check("disk", "ok" if free >= WEIGHTS_BYTES_20B else "warn", detail, False)


def _git_check() -> Check:
    git = shutil.which("git")
    if not git:
        return Check("git", "fail", "git binary not found on PATH (needed by gptoss fetch)", True)
    try:
        out = subprocess.run([git, "--version"], capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError) as exc:
        return Check("git", "fail", f"{git} does not run: {exc}", True)
    return Check("git", "ok", f"{out} ({git})", True)


def _network_check(env: Mapping[str, str] | None) -> Check:
    seen = network_environment(env)
    set_names = [name for name, present in seen.items() if present]
    detail = "set: " + ", ".join(set_names) if set_names else "no HF_ENDPOINT, HF_TOKEN or proxy variables set"
    return Check("network env", "ok", detail, False)


def run_doctor(target: Path, env: Mapping[str, str] | None = None) -> DoctorReport:
    """Check Python, packages, torch/CUDA, free disk at ``target``, git and network-related variables."""
    checks = [_python_check(), *_package_checks(), _torch_check(), _mxfp4_check(env), _disk_check(target),
              _git_check(), _network_check(env)]
    return DoctorReport(tuple(checks))
