"""What ``gptoss up`` will do: the stage list, built by the CLI from settings (``gptoss.toml`` + flags) as explicit
values, and the frozen results of each stage.

    fetch ─► verify ─► audit ─► serve ─► register

A stage is ``off`` when a flag turns it off (``--no-audit``, ``--no-register``, ``--no-serve``, ``--no-verify``);
``--dry-run`` lists the plan (every stage ``planned``, with what it would do) and changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Optional, Sequence

if TYPE_CHECKING:
    from gptoss_cli.audit import AuditRequest
    from gptoss_cli.dify import RegisterOptions
    from gptoss_cli.fetch import FetchOptions

STAGE_ORDER = ("fetch", "verify", "audit", "serve", "register")

DONE, SKIPPED, FAILED, OFF, PLANNED, NOT_RUN = "done", "skipped", "failed", "off", "planned", "not-run"


@dataclass(frozen=True)
class ServeLaunch:
    """How to start ``gptoss serve`` (argv without secrets; the API key stays in the environment)."""

    argv: tuple[str, ...]
    model_dir: Path
    detach: bool
    ready_timeout: float
    model_name: Optional[str] = None  # the served model name the config asks for
    env: Optional[Mapping[str, str]] = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class RegisterPlan:
    """Where to register and with what (``options.endpoint_url`` None: the URL the server reports when ready)."""

    dify_url: str
    options: "RegisterOptions"
    timeout: float = 30.0
    insecure: bool = False


@dataclass(frozen=True)
class UpPlan:
    dest: Path
    fetch: "FetchOptions"
    verify: bool = True
    verify_jobs: int = 0
    audit: Optional["AuditRequest"] = None
    audit_max_age_s: float = 24 * 3600.0
    serve: Optional[ServeLaunch] = None
    register: Optional[RegisterPlan] = None
    register_off: str = "--no-register"  # why register is off, when it is
    bundle: Optional[Path] = None  # --bundle: import DEST from a `gptoss bundle` (every hash checked first)

    def describe(self) -> tuple["StageResult", ...]:
        """The plan as ``planned`` / ``off`` stage results (``--dry-run``)."""
        f = self.fetch
        parts = []
        if self.bundle is not None:
            parts.append(f"import the bundle {self.bundle} (every file's hash checked first)")
        elif f.from_dir is not None:
            parts.append(f"import {f.from_dir}")
        if f.code is not None and self.bundle is None:
            parts.append(f"code {f.code.url}" + (f" @ {f.code.ref}" if f.code.ref else ""))
        if f.weights is not None and f.from_dir is None and self.bundle is None:
            parts.append(f"weights {f.weights.repo_id}@{f.weights.revision} from {f.weights.endpoint}")
        out = [_planned("fetch", "skip if DEST's lock matches and its files verify, else " + "; ".join(parts),
                        {"dest": str(self.dest)})]
        out.append(_planned("verify", f"re-hash {self.dest / 'model'} against the lock") if self.verify
                   else _off("verify", "--no-verify"))
        if self.audit is None:
            out.append(_off("audit", "--no-audit"))
        else:
            svc = self.audit.osv_db or self.audit.osv_url or self.audit.service
            out.append(_planned("audit", f"pip-audit {self.dest / 'code'} against {svc} (skipped when a clean "
                                         f"result for the same inputs is under {self.audit_max_age_s / 3600:g} h old)"))
        if self.serve is None:
            out.append(_off("serve", "--no-serve"))
        else:
            how = "detached (pid + log in DEST/.gptoss)" if self.serve.detach else "in the foreground"
            out.append(_planned("serve", f"gptoss serve {self.serve.model_dir} {how}; reused when already "
                                         "running and ready", {"argv": list(self.serve.argv[1:])}))
        if self.register is None:
            out.append(_off("register", self.register_off))
        else:
            r = self.register
            out.append(_planned("register", f"dify-register {r.options.model_name} at {r.dify_url} (endpoint "
                                            f"{r.options.endpoint_url or 'as the server reports'})"))
        return tuple(out)


@dataclass(frozen=True)
class StageResult:
    """One stage's outcome. ``next`` is the thing to do after a failure (one line)."""

    name: str
    status: str  # done | skipped | failed | off | planned | not-run
    summary: str
    exit_code: int = 0
    seconds: float = 0.0
    data: Mapping[str, Any] = field(default_factory=dict)
    next: Optional[str] = None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status, "summary": self.summary, "exit_code": self.exit_code,
                "seconds": round(self.seconds, 3), "data": dict(self.data), "next": self.next}


@dataclass(frozen=True)
class UpResult:
    dest: Path
    stages: tuple[StageResult, ...]
    dry_run: bool = False
    server: Optional[Any] = None  # ServerInfo once serving

    @property
    def failed(self) -> Optional[StageResult]:
        return next((s for s in self.stages if s.status == FAILED), None)

    @property
    def exit_code(self) -> int:
        f = self.failed
        return f.exit_code if f is not None else 0

    def to_dict(self) -> dict[str, Any]:
        return {"dest": str(self.dest), "dry_run": self.dry_run, "stages": [s.to_dict() for s in self.stages],
                "server": self.server.to_dict() if self.server is not None else None}


def _planned(name: str, summary: str, data: Optional[Mapping[str, Any]] = None) -> StageResult:
    return StageResult(name, PLANNED, summary, data=dict(data or {}))


def _off(name: str, why: str) -> StageResult:
    return StageResult(name, OFF, why)


def not_run(names: Sequence[str]) -> tuple[StageResult, ...]:
    return tuple(StageResult(n, NOT_RUN, "not run: an earlier stage failed") for n in names)


__all__ = ["DONE", "FAILED", "NOT_RUN", "OFF", "PLANNED", "SKIPPED", "STAGE_ORDER", "RegisterPlan", "ServeLaunch",
           "StageResult", "UpPlan", "UpResult", "not_run"]
