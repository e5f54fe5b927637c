"""Report formats (JSON, table, SARIF 2.1.0, CycloneDX 1.5) and the pieces that read pip-audit's answers."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from gptoss_cli.audit import AuditRequest, render, run_audit, write_atomic
from gptoss_cli.audit.core import _environment_result, _lookups_from
from gptoss_cli.audit.runner import RunResult, failure_reason
from tests.osv_fixtures import FakeOsv


@pytest.fixture(scope="module")
def report(tmp_path_factory):  # noqa: ANN001, ANN201 - one pip-audit run shared by the format tests
    base = tmp_path_factory.mktemp("formats")
    req = base / "requirements.txt"
    req.write_text("demo-web==2.19.0\ndemo-nofix==1.4\ndemo-safe==1.0\nloose>=1\n", encoding="utf-8")
    with FakeOsv() as fake:
        out = run_audit(AuditRequest(requirement_files=(req,), osv_url=fake.url, cache_dir=base / "cache"))
    return out, base


def test_json_is_the_documented_schema(report) -> None:  # noqa: ANN001
    doc = json.loads(render(report[0], "json"))
    assert set(doc) == {"schema", "outcome", "exit_code", "fail_on", "service", "pip_audit_version", "summary",
                        "problems", "targets", "vulnerabilities", "unchecked", "ignored"}
    assert doc["outcome"] == "incomplete" and doc["exit_code"] == 3
    assert doc["summary"] == {"targets": 1, "packages_checked": 3, "packages_unchecked": 1, "packages_skipped": 0,
                              "vulnerable_packages": 2, "vulnerabilities": 2, "fixable": 1, "ignored": 0}
    target = doc["targets"][0]
    assert set(target) == {"kind", "path", "resolved", "packages", "unchecked", "skipped", "notes"}
    assert set(target["packages"][0]) == {"name", "version", "file", "line", "vulns"}
    assert set(doc["unchecked"][0]) == {"target", "name", "spec", "file", "line", "reason"}
    assert set(doc["vulnerabilities"][0]) == {"target", "package", "version", "file", "line", "id", "aliases",
                                              "fix_versions", "description"}


def test_table_text(report) -> None:  # noqa: ANN001
    text = render(report[0], "table")
    assert "demo-web" in text and "2.20.0" in text and "loose" in text and "INCOMPLETE" in text
    assert "no known vulnerabilities" not in text


def test_sarif_2_1_0_minimal_valid(report, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.chdir(report[1])
    doc = json.loads(render(report[0], "sarif"))
    assert doc["version"] == "2.1.0" and doc["$schema"].endswith("sarif-2.1.0.json")
    [run] = doc["runs"]
    driver = run["tool"]["driver"]
    assert driver["name"] == "gptoss-audit" and driver["rules"]
    assert "informationUri" not in driver  # optional in SARIF 2.1.0; the project has no public page to point at
    rule_ids = [r["id"] for r in driver["rules"]]
    assert len(rule_ids) == len(set(rule_ids)) == 2
    for result in run["results"]:
        assert rule_ids[result["ruleIndex"]] == result["ruleId"]
        assert result["level"] in ("error", "warning") and result["message"]["text"]
        location = result["locations"][0]["physicalLocation"]
        assert location["artifactLocation"]["uri"] == "requirements.txt"  # relative to the working directory
        assert location["region"]["startLine"] in (1, 2)
    invocation = run["invocations"][0]
    assert invocation["executionSuccessful"] is False and invocation["exitCode"] == 3
    assert "loose" in invocation["toolExecutionNotifications"][0]["message"]["text"]


def test_cyclonedx_1_5_parses(report) -> None:  # noqa: ANN001
    doc = json.loads(render(report[0], "cyclonedx"))
    assert doc["bomFormat"] == "CycloneDX" and doc["specVersion"] == "1.5"
    refs = {c["bom-ref"] for c in doc["components"]}
    assert "pkg:pypi/demo-web@2.19.0" in refs and len(refs) == 3
    for vuln in doc["vulnerabilities"]:
        assert {a["ref"] for a in vuln["affects"]} <= refs
    assert {"name": "gptoss:audit:outcome", "value": "incomplete"} in doc["metadata"]["properties"]
    bom_mod = pytest.importorskip("cyclonedx.model.bom")
    bom = bom_mod.Bom.from_json(doc)  # the reference library reads it back
    assert len(bom.components) == 3 and len(bom.vulnerabilities) == 2


def test_write_atomic_replaces_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "out" / "report.sarif"
    write_atomic(target, "one")
    write_atomic(target, "two")
    assert target.read_text(encoding="utf-8") == "two"
    assert os.listdir(target.parent) == ["report.sarif"]


def test_skip_reasons_are_unchecked_never_clean() -> None:
    """The pip-audit false clean: the pypi service skips packages it cannot find and still exits 0."""
    skip = "Dependency not found on PyPI and could not be audited: demo-web (2.19.0)"
    run = RunResult(dependencies=({"name": "demo-web", "skip_reason": skip},
                                  {"name": "demo-safe", "version": "1.0", "vulns": []}))
    got = _lookups_from([("demo-web", "2.19.0"), ("demo-safe", "1.0"), ("lost", "1")], run)
    assert got[("demo-web", "2.19.0")] == ("skip", skip)
    assert got[("demo-safe", "1.0")] == ("ok", ())
    assert got[("lost", "1")][0] == "fail"  # pip-audit said nothing about it: not checked
    env = _environment_result(RunResult(dependencies=(
        {"name": "mine", "skip_reason": "distribution marked as editable"},
        {"name": "private-pkg", "skip_reason": skip})))
    assert [s.name for s in env.skipped] == ["mine"] and [u.name for u in env.unchecked] == ["private-pkg"]


def test_failure_reason_from_traceback() -> None:
    trace = "\n".join([
        "Traceback (most recent call last):",
        '  File "x.py", line 1, in <module>',
        "urllib3.exceptions.NewConnectionError: HTTPConnection(host='127.0.0.1', port=9): refused",
        "requests.exceptions.ConnectionError: HTTPConnectionPool(host='127.0.0.1', port=9): Max retries exceeded",
    ])
    assert failure_reason(trace, 1).startswith("vulnerability service unreachable (ConnectionError: HTTPConnection")
    http = "requests.exceptions.HTTPError: 500 Server Error: Internal Server Error for url: http://127.0.0.1:9/v1/q"
    assert "500 Server Error" in failure_reason(http + "\n\nThe above exception...\npip_audit.X.ServiceError", 1)
    assert failure_reason("ERROR:pip_audit._cli:requirement x is not pinned", 1) == "requirement x is not pinned"
    assert failure_reason("", 1) == "pip-audit exited with status 1"


def test_report_file_mode_follows_umask(tmp_path: Path) -> None:
    """CI uploads reports: they get the usual file mode (umask), not the 0600 of a private temp file."""
    old = os.umask(0o022)
    try:
        write_atomic(tmp_path / "report.json", "{}")
    finally:
        os.umask(old)
    assert (tmp_path / "report.json").stat().st_mode & 0o777 == 0o644
