"""Run pip-audit as a subprocess and read its JSON report. pip-audit's Python API is private: never import it.

pip-audit exits 1 both for "vulnerabilities found" and for any fatal error (a traceback), so its exit code alone
cannot be trusted. We always pass ``--format json --output FILE``: pip-audit writes that file whenever the audit ran
(clean or not, JSON is a "manifest" format) and never when it died. No file → the run failed, and the reason is
taken from its stderr.

We do not pass ``--strict``: it turns one skipped package into a fatal error that hides every other result. Instead
each ``skip_reason`` in the JSON is reported as "not checked" by the caller, which is at least as strict.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable
from urllib.parse import urlparse

from gptoss_cli.errors import CouldNotRun
from gptoss_cli.lockfile import redact_url, scrub_userinfo

DEFAULT_TIMEOUT_S = 15
RUN_LIMIT_S = 900  # one pip-audit run (a resolution can download metadata for many packages)
_EXC_LINE = re.compile(r"^([A-Za-z_][\w.]*(?:Error|Exception|Timeout)): (.+)$")


@dataclass(frozen=True)
class ServiceConfig:
    """How pip-audit looks vulnerabilities up: ``osv`` (with an optional OSV-compatible URL) or ``pypi``."""

    name: str
    osv_url: str | None = None
    timeout: int = DEFAULT_TIMEOUT_S
    cache_dir: Path | None = None

    def args(self) -> list[str]:
        out = ["--vulnerability-service", self.name, "--timeout", str(self.timeout)]
        if self.name == "osv" and self.osv_url:
            out += ["--osv-url", self.osv_url]
        if self.cache_dir is not None:
            out += ["--cache-dir", str(self.cache_dir)]
        return out


@dataclass(frozen=True)
class RunResult:
    """One pip-audit run: ``dependencies`` as pip-audit reported them, or ``error`` (one line) when it failed."""

    dependencies: tuple[dict[str, Any], ...] = ()
    error: str | None = None
    command: tuple[str, ...] = field(default=(), compare=False)

    @property
    def ok(self) -> bool:
        return self.error is None


def pip_audit_version() -> str:
    """The installed pip-audit version (from package metadata; pip-audit itself is not imported)."""
    try:
        return metadata.version("pip-audit")
    except metadata.PackageNotFoundError:
        raise CouldNotRun(
            f"pip-audit is not installed for {sys.executable}",
            hint="install it in the same environment as gptoss: pip install 'pip-audit>=2.7,<3'",
        ) from None


def _is_loopback_url(url: str | None) -> bool:
    host = urlparse(url).hostname if url else None
    return host in ("127.0.0.1", "localhost", "::1")


def child_environment(service: ServiceConfig) -> dict[str, str]:
    """The inherited environment, passed through to pip-audit unchanged except: a loopback OSV URL must never go
    through a proxy (NO_PROXY gains 127.0.0.1/localhost), and pip-audit's own env defaults cannot override our
    explicit flags (PIP_AUDIT_* removed)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_AUDIT_")}
    if _is_loopback_url(service.osv_url):
        for name in ("NO_PROXY", "no_proxy"):
            current = [p for p in env.get(name, "").split(",") if p.strip()]
            env[name] = ",".join([*current, "127.0.0.1", "localhost", "::1"])
    return env


def _pip_reason(lines: list[str]) -> str | None:
    """Why pip failed inside pip-audit: pip's own last ``ERROR: …`` line, which pip-audit relays after "internal
    pip failure"; or, when pip-audit relays nothing (its pip upgrade), the step, never the command line."""
    own = [line for line in lines if line.startswith("ERROR: ")]  # pip-audit's own lines are "ERROR:pip_audit…"
    if own and any("internal pip failure" in line for line in lines):
        return "pip failed: " + own[-1][len("ERROR: "):].strip()
    if any("Failed to upgrade `pip`" in line for line in lines):
        return ("pip-audit could not upgrade pip in its temporary environment (pip's message is not shown by "
                "pip-audit): is a package index reachable? --resolve needs one")
    if any("Failed to install packages" in line for line in lines):
        return "pip could not resolve the requirements (pip's message is not shown by pip-audit)"
    return None


def failure_reason(stderr: str, returncode: int) -> str:
    """One line that says why pip-audit died, taken from its stderr (pip's error, a traceback or an ERROR log
    line); URL credentials are scrubbed."""
    text = _failure_reason([line.rstrip() for line in stderr.splitlines() if line.strip()], returncode)
    text = " ".join(scrub_userinfo(text).split())
    return text if len(text) <= 300 else text[:297] + "..."


def _failure_reason(lines: list[str], returncode: int) -> str:
    pip = _pip_reason(lines)
    if pip is not None:
        return pip
    exc = [m for m in (_EXC_LINE.match(line) for line in lines) if m]
    requests_exc = [m for m in exc if m.group(1).startswith("requests.")]
    chosen = (requests_exc or exc)[-1] if exc else None
    if chosen is not None:
        name, message = chosen.group(1).rsplit(".", 1)[-1], chosen.group(2)
        if name in ("ConnectionError", "ConnectTimeout", "ReadTimeout", "Timeout"):
            text = f"vulnerability service unreachable ({name}: {message})"
        elif name == "HTTPError":
            text = f"vulnerability service answered with an error ({message})"
        else:
            text = f"{name}: {message}"
    else:
        errors = [line for line in lines if "ERROR" in line]
        pick = errors[-1] if errors else (lines[-1] if lines else f"pip-audit exited with status {returncode}")
        text = re.sub(r"^ERROR:[\w.]+:", "", pick).strip()
    return text


def run_pip_audit(
    extra_args: Iterable[str],
    service: ServiceConfig,
    *,
    limit_s: float = RUN_LIMIT_S,
    python: str | None = None,
) -> RunResult:
    """Run ``python -m pip_audit`` with our fixed flags plus ``extra_args``; never raises for audit failures."""
    with tempfile.TemporaryDirectory(prefix="gptoss-audit-") as tmp:
        report = Path(tmp) / "report.json"
        cmd = [python or sys.executable, "-m", "pip_audit", *extra_args, "--format", "json", "--output",
               str(report), "--progress-spinner", "off", "--desc", "on", "--aliases", "on", *service.args()]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=limit_s, stdin=subprocess.DEVNULL,
                                  env=child_environment(service), check=False)
        except subprocess.TimeoutExpired:
            return RunResult(error=f"pip-audit did not finish within {int(limit_s)} s", command=tuple(cmd))
        except OSError as exc:
            return RunResult(error=f"cannot start pip-audit: {exc}", command=tuple(cmd))
        if not report.is_file():
            reason = redact_url(failure_reason(proc.stderr, proc.returncode), service.osv_url)
            return RunResult(error=reason, command=tuple(cmd))
        try:
            data = json.loads(report.read_text(encoding="utf-8"))
            deps = data["dependencies"]
            if not isinstance(deps, list):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            return RunResult(error="pip-audit wrote a report gptoss cannot read", command=tuple(cmd))
        return RunResult(dependencies=tuple(d for d in deps if isinstance(d, dict)), command=tuple(cmd))


def audit_pinned(packages: list[tuple[str, str]], service: ServiceConfig, workdir: Path) -> RunResult:
    """Audit exact ``name==version`` pairs (unique names) without pip: no resolution, no index, no network but
    the vulnerability service."""
    req = workdir / "pinned.txt"
    req.write_text("".join(f"{name}=={version}\n" for name, version in packages), encoding="utf-8")
    return run_pip_audit(["--requirement", str(req), "--disable-pip", "--no-deps"], service)


def audit_resolved(requirements: list[str], service: ServiceConfig, workdir: Path, label: str) -> RunResult:
    """Let pip resolve ``requirements`` (the full dependency tree; needs the package index) and audit the result."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", label)[-80:] or "target"
    req = workdir / f"resolve-{safe}.txt"
    req.write_text("".join(line + "\n" for line in requirements), encoding="utf-8")
    return run_pip_audit(["--requirement", str(req)], service)


def audit_environment(service: ServiceConfig, python: str | None = None) -> RunResult:
    """Audit the distributions installed for ``python`` (default: the interpreter running gptoss)."""
    return run_pip_audit(["--skip-editable"], service, python=python)
