"""Frozen result objects of an audit, and the one rule that turns them into an outcome and an exit code.

    AuditReport
    ├── targets: TargetResult (one per requirements file, pyproject.toml, or the running environment)
    │   ├── packages:  CheckedPackage (name, version, where declared, vulns found)
    │   ├── unchecked: Unchecked      (could not be looked up → the audit is incomplete, exit 3)
    │   └── skipped:   Skipped        (not applicable here: marker false, local editable project)
    └── ignored: IgnoredVuln          (matched --ignore-vuln; listed, never counted)

Outcome: anything unchecked → ``incomplete`` (exit 3, even when vulnerabilities were also found: a partial audit is
never reported as a finished one); else vulnerabilities that count under ``--fail-on`` → ``vulnerable`` (exit 1);
else ``clean`` (exit 0).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SCHEMA = "gptoss.audit/1"

OUTCOME_CLEAN = "clean"
OUTCOME_VULNERABLE = "vulnerable"
OUTCOME_INCOMPLETE = "incomplete"

FAIL_ON_CHOICES = ("any", "fixable")
SERVICE_CHOICES = ("osv", "pypi")


@dataclass(frozen=True)
class Vuln:
    """One known vulnerability of one package version."""

    id: str
    aliases: tuple[str, ...] = ()
    fix_versions: tuple[str, ...] = ()
    description: str = ""

    @property
    def fixable(self) -> bool:
        return bool(self.fix_versions)

    def ids(self) -> set[str]:
        return {self.id, *self.aliases}


@dataclass(frozen=True)
class CheckedPackage:
    """A package version the vulnerability service answered for (``vulns`` may be empty)."""

    name: str
    version: str
    line: int | None = None
    vulns: tuple[Vuln, ...] = ()
    file: Path | None = None  # the file that declares it (an -r include may differ from the target)


@dataclass(frozen=True)
class Unchecked:
    """Something that should have been audited but was not; ``reason`` says why, in words."""

    name: str
    reason: str
    spec: str = ""
    line: int | None = None
    file: Path | None = None


@dataclass(frozen=True)
class Skipped:
    """Something deliberately not audited because it does not apply (documented, does not change the outcome)."""

    name: str
    reason: str
    line: int | None = None
    file: Path | None = None


@dataclass(frozen=True)
class IgnoredVuln:
    id: str
    package: str
    version: str
    matched: str


@dataclass(frozen=True)
class TargetResult:
    """One audited target: ``kind`` is ``requirements``, ``pyproject`` or ``environment``."""

    kind: str
    path: Path | None
    resolved: bool
    packages: tuple[CheckedPackage, ...] = ()
    unchecked: tuple[Unchecked, ...] = ()
    skipped: tuple[Skipped, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        return str(self.path) if self.path is not None else "environment"


@dataclass(frozen=True)
class ServiceInfo:
    """Where vulnerability data came from."""

    name: str
    url: str | None = None
    osv_db: dict[str, Any] | None = None


@dataclass(frozen=True)
class AuditReport:
    targets: tuple[TargetResult, ...]
    service: ServiceInfo
    fail_on: str = "any"
    ignored: tuple[IgnoredVuln, ...] = ()
    pip_audit_version: str | None = None
    problems: tuple[str, ...] = field(default=())  # audit-wide reasons for "incomplete" (e.g. nothing to audit)

    # -- counting -------------------------------------------------------------------------------------------------
    def vulnerabilities(self) -> list[tuple[TargetResult, CheckedPackage, Vuln]]:
        return [(t, p, v) for t in self.targets for p in t.packages for v in p.vulns]

    def counting(self) -> list[tuple[TargetResult, CheckedPackage, Vuln]]:
        """The vulnerabilities that make the audit fail under ``fail_on``."""
        found = self.vulnerabilities()
        if self.fail_on == "fixable":
            return [x for x in found if x[2].fixable]
        return found

    def unchecked(self) -> list[tuple[TargetResult, Unchecked]]:
        return [(t, u) for t in self.targets for u in t.unchecked]

    @property
    def outcome(self) -> str:
        if self.unchecked() or self.problems:
            return OUTCOME_INCOMPLETE
        if self.counting():
            return OUTCOME_VULNERABLE
        return OUTCOME_CLEAN

    @property
    def exit_code(self) -> int:
        return {OUTCOME_CLEAN: 0, OUTCOME_VULNERABLE: 1, OUTCOME_INCOMPLETE: 3}[self.outcome]

    def summary(self) -> dict[str, int]:
        found = self.vulnerabilities()
        checked = {(p.name, p.version) for t in self.targets for p in t.packages}
        vulnerable = {(p.name, p.version) for _, p, _ in found}
        return {
            "targets": len(self.targets),
            "packages_checked": len(checked),
            "packages_unchecked": len(self.unchecked()),
            "packages_skipped": sum(len(t.skipped) for t in self.targets),
            "vulnerable_packages": len(vulnerable),
            "vulnerabilities": len(found),
            "fixable": sum(1 for _, _, v in found if v.fixable),
            "ignored": len(self.ignored),
        }

    # -- the documented JSON document (schema gptoss.audit/1) -------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "outcome": self.outcome,
            "exit_code": self.exit_code,
            "fail_on": self.fail_on,
            "service": {"name": self.service.name, "url": self.service.url, "osv_db": self.service.osv_db},
            "pip_audit_version": self.pip_audit_version,
            "summary": self.summary(),
            "problems": list(self.problems),
            "targets": [_target_dict(t) for t in self.targets],
            "vulnerabilities": [
                {"target": t.label, "package": p.name, "version": p.version, "file": _where(p.file), "line": p.line,
                 **_vuln_dict(v)}
                for t, p, v in self.vulnerabilities()
            ],
            "unchecked": [{"target": t.label, **_unchecked_dict(u)} for t, u in self.unchecked()],
            "ignored": [
                {"id": i.id, "package": i.package, "version": i.version, "matched": i.matched} for i in self.ignored
            ],
        }


def _vuln_dict(v: Vuln) -> dict[str, Any]:
    return {"id": v.id, "aliases": list(v.aliases), "fix_versions": list(v.fix_versions), "description": v.description}


def _where(file: Path | None) -> str | None:
    return str(file) if file is not None else None


def _unchecked_dict(u: Unchecked) -> dict[str, Any]:
    return {"name": u.name, "spec": u.spec, "file": _where(u.file), "line": u.line, "reason": u.reason}


def _target_dict(t: TargetResult) -> dict[str, Any]:
    return {
        "kind": t.kind,
        "path": str(t.path) if t.path is not None else None,
        "resolved": t.resolved,
        "packages": [
            {"name": p.name, "version": p.version, "file": _where(p.file), "line": p.line,
             "vulns": [_vuln_dict(v) for v in p.vulns]}
            for p in t.packages
        ],
        "unchecked": [_unchecked_dict(u) for u in t.unchecked],
        "skipped": [{"name": s.name, "file": _where(s.file), "line": s.line, "reason": s.reason} for s in t.skipped],
        "notes": list(t.notes),
    }
