"""Report formats for files and CI: normalized JSON, plain-text table, SARIF 2.1.0, CycloneDX 1.5 JSON."""

from __future__ import annotations

import datetime as _dt
import json
import uuid
from pathlib import Path
from typing import Any

from gptoss_cli import __version__
from gptoss_cli.audit.model import OUTCOME_INCOMPLETE, AuditReport, CheckedPackage, TargetResult, Vuln
from gptoss_cli.lockfile import atomic_write_text

FORMATS = ("table", "json", "cyclonedx", "sarif")
SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"


def render(report: AuditReport, fmt: str) -> str:
    """The report as text in ``fmt`` (one of FORMATS)."""
    if fmt == "json":
        return json.dumps(report.to_dict(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    if fmt == "sarif":
        return json.dumps(to_sarif(report), indent=2, ensure_ascii=False) + "\n"
    if fmt == "cyclonedx":
        return json.dumps(to_cyclonedx(report), indent=2, ensure_ascii=False) + "\n"
    if fmt == "table":
        return to_text(report)
    raise ValueError(f"unknown format {fmt}")  # pragma: no cover - the CLI validates choices


write_atomic = atomic_write_text  # reports are written like the lock: temp file in the same folder + os.replace


# -- plain text ---------------------------------------------------------------------------------------------------
def headline(report: AuditReport) -> str:
    s = report.summary()
    if report.outcome == OUTCOME_INCOMPLETE:
        found = f"; {s['vulnerabilities']} known vulnerabilities in what was checked" if s["vulnerabilities"] else ""
        count = s["packages_unchecked"] + len(report.problems)
        return f"INCOMPLETE: {count} item(s) could not be checked{found} — this is not a clean result"
    if s["vulnerabilities"]:
        return (f"{s['vulnerabilities']} known vulnerabilities in {s['vulnerable_packages']} package(s) "
                f"({s['fixable']} fixable), {s['packages_checked']} package(s) checked")
    return f"no known vulnerabilities in {s['packages_checked']} checked package(s)"


def _columns(rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]


def to_text(report: AuditReport) -> str:
    lines = [f"gptoss audit ({report.service.name}{' ' + report.service.url if report.service.url else ''})"]
    vulns = report.vulnerabilities()
    if vulns:
        rows = [["target", "package", "version", "id", "aliases", "fix versions"]]
        rows += [[t.label, p.name, p.version, v.id, ", ".join(v.aliases), ", ".join(v.fix_versions) or "-"]
                 for t, p, v in vulns]
        lines += ["", *_columns(rows)]
    unchecked = report.unchecked()
    if unchecked or report.problems:
        rows = [["target", "not checked", "why"]]
        rows += [[t.label, u.name, u.reason] for t, u in unchecked]
        rows += [["-", "-", p] for p in report.problems]
        lines += ["", *_columns(rows)]
    if report.ignored:
        lines += ["", "ignored: " + ", ".join(f"{i.id} ({i.package} {i.version})" for i in report.ignored)]
    lines += ["", headline(report)]
    return "\n".join(lines) + "\n"


# -- SARIF 2.1.0 --------------------------------------------------------------------------------------------------
def _uri(path: Path) -> str:
    """A path relative to the working directory when it lies below it (what code scanning expects), else file://."""
    try:
        full, cwd = path.resolve(), Path.cwd().resolve()
        return full.relative_to(cwd).as_posix() if full.is_relative_to(cwd) else full.as_uri()
    except (OSError, ValueError):
        return path.as_posix()


def _location(file: Path | None, line: int | None) -> list[dict[str, Any]]:
    if file is None:
        return []
    physical: dict[str, Any] = {"artifactLocation": {"uri": _uri(file)}}
    if line:
        physical["region"] = {"startLine": line}
    return [{"physicalLocation": physical}]


def _rule(v: Vuln) -> dict[str, Any]:
    text = v.description or v.id
    return {
        "id": v.id,
        "name": "VulnerableDependency",
        "shortDescription": {"text": text if len(text) <= 200 else text[:197] + "..."},
        "fullDescription": {"text": text},
        "helpUri": f"https://osv.dev/vulnerability/{v.id}",
        "help": {"text": f"Upgrade to {', '.join(v.fix_versions)}" if v.fix_versions else "No fixed version known"},
        "properties": {"tags": ["security", "dependency", *v.aliases]},
    }


def to_sarif(report: AuditReport) -> dict[str, Any]:
    rules: list[dict[str, Any]] = []
    index: dict[str, int] = {}
    counting = {(id(t), id(p), id(v)) for t, p, v in report.counting()}
    results = []
    for t, p, v in report.vulnerabilities():
        if v.id not in index:
            index[v.id] = len(rules)
            rules.append(_rule(v))
        fix = f"; fixed in {', '.join(v.fix_versions)}" if v.fix_versions else "; no fixed version known"
        aliases = f" ({', '.join(v.aliases)})" if v.aliases else ""
        result: dict[str, Any] = {
            "ruleId": v.id,
            "ruleIndex": index[v.id],
            "level": "error" if (id(t), id(p), id(v)) in counting else "warning",
            "message": {"text": f"{p.name} {p.version} is affected by {v.id}{aliases}{fix} [{t.label}]"},
            "partialFingerprints": {"gptossAudit/v1": f"{v.id}:{p.name}:{p.version}"},
        }
        where = _location(p.file or t.path, p.line)
        if where:
            result["locations"] = where
        results.append(result)
    notes = [{"level": "error", "message": {"text": f"not checked: {u.name}: {u.reason} [{t.label}]"},
              **({"locations": _location(u.file or t.path, u.line)} if (u.file or t.path) else {})}
             for t, u in report.unchecked()]
    notes += [{"level": "error", "message": {"text": problem}} for problem in report.problems]
    return {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {"name": "gptoss-audit", "version": __version__, "semanticVersion": __version__,
                                "rules": rules}},  # no informationUri: the project has no public home to name
            "invocations": [{"executionSuccessful": report.outcome != OUTCOME_INCOMPLETE,
                             "exitCode": report.exit_code, "toolExecutionNotifications": notes}],
            "results": results,
        }],
    }


# -- CycloneDX 1.5 JSON -------------------------------------------------------------------------------------------
def _purl(p: CheckedPackage) -> str:
    return f"pkg:pypi/{p.name}@{p.version}"


def to_cyclonedx(report: AuditReport) -> dict[str, Any]:
    components: dict[str, dict[str, Any]] = {}
    by_vuln: dict[str, tuple[Vuln, list[str]]] = {}
    for t in report.targets:
        for p in t.packages:
            ref = _purl(p)
            comp = components.setdefault(ref, {"type": "library", "bom-ref": ref, "name": p.name,
                                               "version": p.version, "purl": ref, "properties": []})
            comp["properties"].append({"name": "gptoss:audit:target", "value": t.label})
            for v in p.vulns:
                entry = by_vuln.setdefault(v.id, (v, []))
                if ref not in entry[1]:
                    entry[1].append(ref)
    vulnerabilities = []
    for vid, (v, refs) in by_vuln.items():
        item: dict[str, Any] = {
            "bom-ref": f"vuln:{vid}",
            "id": vid,
            "source": {"name": "OSV", "url": f"https://osv.dev/vulnerability/{vid}"},
            "references": [{"id": a, "source": {"name": "OSV", "url": f"https://osv.dev/vulnerability/{a}"}}
                           for a in v.aliases],
            "description": v.description,
            "affects": [{"ref": r} for r in refs],
        }
        if v.fix_versions:
            item["recommendation"] = f"Upgrade to {', '.join(v.fix_versions)}"
        vulnerabilities.append(item)
    props = [{"name": "gptoss:audit:outcome", "value": report.outcome}]
    props += [{"name": "gptoss:audit:unchecked", "value": f"{t.label}: {u.name}: {u.reason}"}
              for t, u in report.unchecked()]
    props += [{"name": "gptoss:audit:problem", "value": p} for p in report.problems]
    now = _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    return {
        "$schema": "http://cyclonedx.org/schema/bom-1.5.schema.json",
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "serialNumber": f"urn:uuid:{uuid.uuid4()}",
        "version": 1,
        "metadata": {"timestamp": now,
                     "tools": {"components": [{"type": "application", "name": "gptoss", "version": __version__}]},
                     "properties": props},
        "components": list(components.values()),
        "vulnerabilities": vulnerabilities,
    }


def target_counts(t: TargetResult) -> str:
    vulns = sum(len(p.vulns) for p in t.packages)
    return f"{len(t.packages)} checked, {len(t.unchecked)} not checked, {len(t.skipped)} skipped, {vulns} vulns"
