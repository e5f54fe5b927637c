"""``run_audit``: targets → pip-audit runs → one ``AuditReport``. No printing, no exit codes (see ``model``)."""

from __future__ import annotations

import contextlib
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from packaging.version import InvalidVersion, Version

from gptoss_cli.audit.model import (
    AuditReport,
    CheckedPackage,
    IgnoredVuln,
    ServiceInfo,
    Skipped,
    TargetResult,
    Unchecked,
    Vuln,
)
from gptoss_cli.audit.osv_local import load_osv_db
from gptoss_cli.audit.osv_server import serve_osv
from gptoss_cli.audit.requirements import Entry
from gptoss_cli.audit.runner import (
    RunResult,
    ServiceConfig,
    audit_environment,
    audit_pinned,
    audit_resolved,
    pip_audit_version,
)
from gptoss_cli.audit.targets import KIND_ENVIRONMENT, TargetSpec, plan_targets
from gptoss_cli.lockfile import public_url

_EDITABLE_SKIPS = ("distribution marked as editable", "requirement marked as editable")
PINNED_NOTE = "dependencies of the listed packages are audited only when the file lists them too (not resolved; " \
              "use a fully pinned lock file or --resolve)"


@dataclass(frozen=True)
class AuditRequest:
    """Everything one audit needs, as explicit values (the CLI resolves flags/env/config into this)."""

    code_dir: Path | None = None
    requirement_files: tuple[Path, ...] = ()
    include_env: bool = False
    service: str = "osv"
    osv_url: str | None = None
    osv_db: Path | None = None
    ignore_vulns: tuple[str, ...] = ()
    fail_on: str = "any"
    resolve: bool = False
    timeout: int = 15
    cache_dir: Path | None = None
    python: str | None = None  # the interpreter whose environment --env audits (default: this one)
    progress: Callable[[str], None] = field(default=lambda _msg: None, compare=False, repr=False)


# Result of auditing one exact package version: ("ok", vulns) | ("skip", reason) | ("fail", reason).
Lookup = tuple[str, object]


def run_audit(request: AuditRequest) -> AuditReport:
    """Audit every target of ``request``; unreachable services and skips become ``Unchecked`` items, not errors."""
    version = pip_audit_version()
    plan = plan_targets(request.code_dir, list(request.requirement_files), request.include_env)
    with _service(request) as (service, info):
        with tempfile.TemporaryDirectory(prefix="gptoss-audit-") as tmp:
            results = _audit_targets(plan.targets, service, Path(tmp), request)
    targets, ignored = _apply_ignores(results, request.ignore_vulns)
    problems = list(plan.problems)
    if not targets and not problems:
        problems.append("nothing to audit: give DEST (with code/), -r FILE or --env")
    return AuditReport(targets=tuple(targets), service=info, fail_on=request.fail_on, ignored=tuple(ignored),
                       pip_audit_version=version, problems=tuple(problems))


@contextlib.contextmanager
def _service(request: AuditRequest) -> Iterator[tuple[ServiceConfig, ServiceInfo]]:
    if request.osv_db is None:
        config = ServiceConfig(request.service, request.osv_url, request.timeout, request.cache_dir)
        shown = public_url(request.osv_url) if request.osv_url else (
            "https://api.osv.dev/v1/query" if request.service == "osv" else "https://pypi.org")
        yield config, ServiceInfo(request.service, shown)
        return
    request.progress(f"loading OSV database {request.osv_db}")
    with load_osv_db(request.osv_db) as db, serve_osv(db) as url:
        request.progress(f"OSV database: {db.info.records} PyPI advisories, served on {url}")
        yield ServiceConfig("osv", url, request.timeout, request.cache_dir), ServiceInfo("osv-db", url,
                                                                                         db.info.to_dict())


def _audit_targets(targets: tuple[TargetSpec, ...], service: ServiceConfig, workdir: Path,
                   request: AuditRequest) -> list[TargetResult]:
    lookups = {} if request.resolve else _audit_pinned_entries(targets, service, workdir, request.progress)
    out: list[TargetResult] = []
    for target in targets:
        if target.kind == KIND_ENVIRONMENT:
            request.progress("auditing the environment gptoss runs in")
            out.append(_environment_result(audit_environment(service, request.python)))
        elif request.resolve and target.parsed.entries:
            request.progress(f"resolving and auditing {target.path}")
            run = audit_resolved([e.requirement for e in target.parsed.entries], service, workdir, str(target.path))
            out.append(_resolved_result(target, run))
        else:
            out.append(_pinned_result(target, lookups))
    return out


def _key(name: str, version: str) -> tuple[str, str]:
    try:
        return name, str(Version(version))
    except InvalidVersion:
        return name, version


def _audit_pinned_entries(targets: tuple[TargetSpec, ...], service: ServiceConfig, workdir: Path,
                          progress: Callable[[str], None]) -> dict[tuple[str, str], Lookup]:
    """Audit every pinned version of every target in as few pip-audit runs as possible (one name per run)."""
    wanted: dict[str, list[str]] = {}
    for target in targets:
        for entry in target.parsed.entries:
            if entry.pinned is not None:
                name, version = _key(entry.name, entry.pinned)
                versions = wanted.setdefault(name, [])
                if version not in versions:
                    versions.append(version)
    lookups: dict[tuple[str, str], Lookup] = {}
    batches: list[list[tuple[str, str]]] = []
    for name, versions in sorted(wanted.items()):
        for i, version in enumerate(versions):
            try:
                Version(version)
            except InvalidVersion:
                lookups[(name, version)] = ("fail", "not a PEP 440 version: cannot be looked up")
                continue
            while len(batches) <= i:
                batches.append([])
            batches[i].append((name, version))
    for batch in batches:
        if batch:
            progress(f"auditing {len(batch)} pinned packages with pip-audit ({service.name})")
            lookups.update(_lookups_from(batch, audit_pinned(batch, service, workdir)))
    return lookups


def _vulns(raw: object) -> tuple[Vuln, ...]:
    out = []
    for v in raw if isinstance(raw, list) else []:
        if isinstance(v, dict) and v.get("id"):
            out.append(Vuln(id=str(v["id"]), aliases=tuple(sorted(map(str, v.get("aliases") or []))),
                            fix_versions=tuple(map(str, v.get("fix_versions") or [])),
                            description=str(v.get("description") or "")))
    return tuple(out)


def _lookups_from(batch: list[tuple[str, str]], run: RunResult) -> dict[tuple[str, str], Lookup]:
    if not run.ok:
        return {key: ("fail", run.error or "pip-audit failed") for key in batch}
    got: dict[tuple[str, str], Lookup] = {}
    for dep in run.dependencies:
        name = str(dep.get("name", ""))
        if "skip_reason" in dep:
            for key in batch:
                if key[0] == name:
                    got[key] = ("skip", str(dep["skip_reason"]))
        else:
            got[_key(name, str(dep.get("version", "")))] = ("ok", _vulns(dep.get("vulns")))
    return {key: got.get(key, ("fail", "pip-audit returned no result for it")) for key in batch}


def _pinned_result(target: TargetSpec, lookups: dict[tuple[str, str], Lookup]) -> TargetResult:
    parsed = target.parsed
    packages: list[CheckedPackage] = []
    unchecked: list[Unchecked] = list(parsed.unchecked)
    seen: set[tuple[str, str]] = set()
    for entry in parsed.entries:
        if entry.pinned is None:
            unchecked.append(_unpinned(entry))
            continue
        key = _key(entry.name, entry.pinned)
        if key in seen:
            continue
        seen.add(key)
        status, value = lookups.get(key, ("fail", "not audited"))
        if status == "ok":
            packages.append(CheckedPackage(key[0], key[1], entry.line, value, entry.file))  # type: ignore[arg-type]
        else:
            unchecked.append(Unchecked(entry.name, str(value), entry.requirement, entry.line, entry.file))
    notes = list(parsed.notes) + ([PINNED_NOTE] if parsed.entries else [])
    return TargetResult(target.kind, target.path, False, tuple(packages), tuple(unchecked), parsed.skipped,
                        tuple(notes))


def _unpinned(entry: Entry) -> Unchecked:
    return Unchecked(entry.name, "not pinned to one version: pin it (pip-compile, uv pip compile) or use --resolve",
                     entry.requirement, entry.line, entry.file)


def _resolved_result(target: TargetSpec, run: RunResult) -> TargetResult:
    parsed = target.parsed
    unchecked: list[Unchecked] = list(parsed.unchecked)
    packages: list[CheckedPackage] = []
    if not run.ok:
        reason = f"dependency resolution or audit failed: {run.error}"
        unchecked += [Unchecked(e.name, reason, e.requirement, e.line, e.file) for e in parsed.entries]
    else:
        declared = {e.name: e for e in parsed.entries}
        for dep in run.dependencies:
            name = str(dep.get("name", ""))
            entry = declared.get(name)
            line, file = (entry.line, entry.file) if entry else (None, None)
            if "skip_reason" in dep:
                unchecked.append(Unchecked(name, str(dep["skip_reason"]), "", line, file))
            else:
                packages.append(CheckedPackage(name, str(dep.get("version", "")), line, _vulns(dep.get("vulns")),
                                               file))
    return TargetResult(target.kind, target.path, True, tuple(packages), tuple(unchecked), parsed.skipped,
                        parsed.notes)


def _environment_result(run: RunResult) -> TargetResult:
    if not run.ok:
        return TargetResult(KIND_ENVIRONMENT, None, True,
                            unchecked=(Unchecked("environment", f"pip-audit failed: {run.error}"),))
    packages, unchecked, skipped = [], [], []
    for dep in run.dependencies:
        name = str(dep.get("name", ""))
        reason = dep.get("skip_reason")
        if reason is None:
            packages.append(CheckedPackage(name, str(dep.get("version", "")), vulns=_vulns(dep.get("vulns"))))
        elif any(s in str(reason) for s in _EDITABLE_SKIPS):
            skipped.append(Skipped(name, "editable install (local code under development, not a published release)"))
        else:
            unchecked.append(Unchecked(name, str(reason)))
    return TargetResult(KIND_ENVIRONMENT, None, True, tuple(packages), tuple(unchecked), tuple(skipped))


def _apply_ignores(targets: list[TargetResult], ignore: tuple[str, ...]) -> tuple[list[TargetResult], list[IgnoredVuln]]:
    """Drop vulnerabilities whose id or any alias was given with --ignore-vuln (case-insensitive), listing them."""
    wanted = {i.strip().upper(): i.strip() for i in ignore if i.strip()}
    if not wanted:
        return targets, []
    ignored: list[IgnoredVuln] = []
    out = []
    for target in targets:
        packages = []
        for p in target.packages:
            kept = []
            for v in p.vulns:
                hit = next((wanted[i.upper()] for i in sorted(v.ids()) if i.upper() in wanted), None)
                if hit is None:
                    kept.append(v)
                else:
                    ignored.append(IgnoredVuln(v.id, p.name, p.version, hit))
            packages.append(CheckedPackage(p.name, p.version, p.line, tuple(kept), p.file))
        out.append(TargetResult(target.kind, target.path, target.resolved, tuple(packages), target.unchecked,
                                target.skipped, target.notes))
    return out, ignored
