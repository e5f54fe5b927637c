"""`gptoss audit` end to end: the real pip-audit subprocess against a fake OSV service / a local OSV export.

Every pip-audit run here uses pinned requirements with --disable-pip --no-deps (no index, no PyPI) and an OSV URL
on 127.0.0.1, so nothing leaves the machine.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gptoss_cli.cli import app
from tests.osv_fixtures import FakeOsv, closed_port_url, fake_osv, write_export_zip  # noqa: F401 - fixture

runner = CliRunner()
NEVER = "no known vulnerabilities"


def _req(tmp_path: Path, *lines: str, name: str = "requirements.txt") -> Path:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _audit(*args: str):  # noqa: ANN202
    return runner.invoke(app, ["--json", "audit", *args], catch_exceptions=False)


def test_vulnerable_exit_1_with_ids_aliases_fixes_and_withdrawn_skipped(tmp_path: Path, fake_osv: FakeOsv) -> None:
    req = _req(tmp_path, "demo-web[socks]==2.19.0 \\",
               "    --hash=sha256:0000000000000000000000000000000000000000000000000000000000000000",
               "demo-safe==1.0")
    result = _audit("-r", str(req), "--osv-url", fake_osv.url)
    assert result.exit_code == 1, result.stderr
    doc = json.loads(result.stdout)
    assert doc["schema"] == "gptoss.audit/1" and doc["outcome"] == "vulnerable" and doc["exit_code"] == 1
    [vuln] = doc["vulnerabilities"]  # the withdrawn GHSA-demo-0003 is not reported
    assert vuln["package"] == "demo-web" and vuln["version"] == "2.19.0" and vuln["line"] == 1
    assert {vuln["id"], *vuln["aliases"]} == {"GHSA-demo-0001-aaaa", "CVE-2099-1001", "PYSEC-2099-1"}
    assert vuln["fix_versions"] == ["2.20.0"]
    assert doc["summary"]["packages_checked"] == 2 and doc["unchecked"] == []
    assert {(q["package"]["name"], q["version"]) for q in fake_osv.queries} == {("demo-web", "2.19.0"),
                                                                              ("demo-safe", "1.0")}
    assert "1 known vulnerabilities" in result.stderr


def test_clean_exit_0_human_table(tmp_path: Path, fake_osv: FakeOsv, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setenv("GPTOSS_AUDIT_OSV_URL", fake_osv.url)  # env is a documented way to set the URL
    req = _req(tmp_path, "demo-safe==1.0", "demo-web==2.20.0")
    result = runner.invoke(app, ["audit", "-r", str(req)])
    assert result.exit_code == 0, result.stderr
    assert "no known vulnerabilities in 2 checked package(s)" in result.stdout


def test_unreachable_service_exit_3_names_what_was_not_checked(tmp_path: Path) -> None:
    req = _req(tmp_path, "demo-web==2.19.0", "demo-safe==1.0")
    result = _audit("-r", str(req), "--osv-url", closed_port_url())
    assert result.exit_code == 3
    doc = json.loads(result.stdout)
    assert doc["outcome"] == "incomplete" and doc["summary"]["packages_checked"] == 0
    assert {u["name"] for u in doc["unchecked"]} == {"demo-web", "demo-safe"}
    assert all("unreachable" in u["reason"] for u in doc["unchecked"])
    assert "demo-web" in result.stderr and "not a clean result" in result.stderr
    assert NEVER not in (result.stdout + result.stderr).lower()


def test_service_error_exit_3(tmp_path: Path, fake_osv: FakeOsv) -> None:
    fake_osv.status = 500
    result = runner.invoke(app, ["audit", "-r", str(_req(tmp_path, "demo-safe==1.0")), "--osv-url", fake_osv.url])
    assert result.exit_code == 3
    assert "INCOMPLETE" in result.stdout and "500" in result.stdout + result.stderr
    assert NEVER not in (result.stdout + result.stderr).lower()


def test_partial_audit_with_vulns_is_exit_3_and_says_both(tmp_path: Path, fake_osv: FakeOsv) -> None:
    req = _req(tmp_path, "demo-web==2.19.0", "unpinned>=1.0", "-e git+https://example.invalid/x.git#egg=x", "-e .")
    result = _audit("-r", str(req), "--osv-url", fake_osv.url)
    assert result.exit_code == 3
    doc = json.loads(result.stdout)
    assert doc["outcome"] == "incomplete" and len(doc["vulnerabilities"]) == 1
    reasons = {u["name"]: u["reason"] for u in doc["unchecked"]}
    assert "not pinned" in reasons["unpinned"] and "VCS" in reasons["git+https://example.invalid/x.git#egg=x"]
    assert doc["targets"][0]["skipped"][0]["name"] == "."  # an editable local project does not block the result
    assert "also found 1 known vulnerabilities" in result.stderr


def test_ignore_vuln_by_alias_and_fail_on_fixable(tmp_path: Path, fake_osv: FakeOsv) -> None:
    req = _req(tmp_path, "demo-web==2.19.0", "demo-nofix==1.4")
    both = _audit("-r", str(req), "--osv-url", fake_osv.url, "--ignore-vuln", "cve-2099-1001")
    assert both.exit_code == 1  # demo-nofix still counts under --fail-on any
    doc = json.loads(both.stdout)
    assert doc["ignored"][0]["matched"] == "cve-2099-1001" and doc["ignored"][0]["package"] == "demo-web"
    assert [v["package"] for v in doc["vulnerabilities"]] == ["demo-nofix"]
    fixable = _audit("-r", str(req), "--osv-url", fake_osv.url, "--ignore-vuln", "GHSA-demo-0001-aaaa",
                     "--fail-on", "fixable")
    assert fixable.exit_code == 0, fixable.stderr  # the only vuln left has no fixed version
    assert json.loads(fixable.stdout)["outcome"] == "clean"


def test_dest_code_targets_reported_separately(tmp_path: Path, fake_osv: FakeOsv) -> None:
    code = tmp_path / "dest" / "code"
    (code / "sub").mkdir(parents=True)
    _req(code, "demo-web==2.19.0")
    (code / "sub" / "pyproject.toml").write_text(
        '[project]\nname = "sub"\ndependencies = ["demo-safe==1.0", "demo-web==2.19.0"]\n', encoding="utf-8")
    result = _audit(str(tmp_path / "dest"), "--osv-url", fake_osv.url)
    assert result.exit_code == 1
    targets = json.loads(result.stdout)["targets"]
    assert [(t["kind"], Path(t["path"]).name) for t in targets] == [("requirements", "requirements.txt"),
                                                                   ("pyproject", "pyproject.toml")]
    assert [len(t["packages"]) for t in targets] == [1, 2]
    assert targets[1]["packages"][1]["line"] == 3
    assert len(fake_osv.queries) == 2  # the same pinned version is looked up once


@pytest.mark.parametrize("how", ["argument", "--dest"])
def test_missing_code_dir_is_never_clean(tmp_path: Path, how: str) -> None:
    dest = str(tmp_path / "nothing-here")
    result = _audit(*([dest] if how == "argument" else ["--dest", dest]), "--osv-url", closed_port_url())
    assert result.exit_code == 3
    assert "gptoss fetch" in json.loads(result.stdout)["problems"][0]
    assert NEVER not in (result.stdout + result.stderr).lower()


def test_output_file_unwritable_is_exit_3(tmp_path: Path, fake_osv: FakeOsv) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x", encoding="utf-8")
    result = _audit("-r", str(_req(tmp_path, "demo-safe==1.0")), "--osv-url", fake_osv.url,
                    "--output", str(blocker / "report.json"))
    assert result.exit_code == 3 and "cannot write the report" in result.stderr


def test_osv_db_air_gapped_edge_cases(tmp_path: Path) -> None:
    db = write_export_zip(tmp_path / "all.zip")
    req = _req(tmp_path, "demo-web==2.19.0", "demo-web-other==1.0", "edge-lib==1.5+cu121", "edge-two==3.0rc1",
               "edge-listed==0.1.0", "edge-two-safe==3.0")
    result = _audit("-r", str(req), "--osv-db", str(db), "--format", "sarif", "--output", str(tmp_path / "r.sarif"))
    assert result.exit_code == 1, result.stderr
    doc = json.loads(result.stdout)
    assert doc["service"]["name"] == "osv-db" and doc["service"]["url"].startswith("http://127.0.0.1:")
    assert doc["service"]["osv_db"]["records"] == 6
    found = {(v["package"], v["version"]) for v in doc["vulnerabilities"]}
    assert found == {("demo-web", "2.19.0"), ("edge-lib", "1.5+cu121"), ("edge-two", "3.0rc1"),
                     ("edge-listed", "0.1.0")}
    sarif = json.loads((tmp_path / "r.sarif").read_text(encoding="utf-8"))
    assert sarif["version"] == "2.1.0" and len(sarif["runs"][0]["results"]) == 4


def test_environment_audit(tmp_path: Path, fake_osv: FakeOsv) -> None:
    result = _audit("--env", "--osv-url", fake_osv.url)
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    [target] = doc["targets"]
    assert target["kind"] == "environment" and target["path"] is None
    assert doc["summary"]["packages_checked"] > 10
    assert "typer" in {q["package"]["name"] for q in fake_osv.queries}


@pytest.mark.parametrize(("args", "message"), [
    (["--osv-db", "x.zip", "--service", "pypi"], "--osv-db"),
    (["--osv-url", "http://127.0.0.1:1/v1/query", "--service", "pypi"], "--osv-url needs"),
    (["--service", "esms"], "--service"),
    (["--fail-on", "some"], "--fail-on"),
    (["--format", "sarif"], "--output FILE"),
    (["-r", "missing.txt"], "no such file"),
    (["--format", "xml"], "--format"),
])
def test_usage_errors_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    result = _audit("--env", *args)
    assert result.exit_code == 2
    assert message in result.stderr
    doc = json.loads(result.stdout)  # --json: the usage error is the envelope's error, and no report
    assert doc["schema"] == "gptoss.audit/1" and doc["ok"] is False and doc["exit_code"] == 2
    assert doc["error"]["type"] == "UsageError" and message in doc["error"]["message"]
    assert "targets" not in doc and "outcome" not in doc


def test_osv_db_missing_is_usage_error(tmp_path: Path) -> None:
    result = _audit("--env", "--osv-db", str(tmp_path / "nope.zip"))
    assert result.exit_code == 2 and "does not exist" in result.stderr


@pytest.mark.slow
def test_resolve_without_an_index_is_exit_3(tmp_path: Path, fake_osv: FakeOsv, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # pip in pip-audit's temporary venv must not reach any index
    monkeypatch.setenv("PIP_CONFIG_FILE", "/dev/null")
    req = _req(tmp_path, "demo-safe>=1.0")
    result = _audit("-r", str(req), "--osv-url", fake_osv.url, "--resolve")
    assert result.exit_code == 3
    [unchecked] = json.loads(result.stdout)["unchecked"]
    assert unchecked["name"] == "demo-safe" and "resolution" in unchecked["reason"]
    assert "bin/python" not in unchecked["reason"] and "package index" in unchecked["reason"]  # not pip's argv
    assert fake_osv.queries == []


SECRET = "osvSecret-9f8e7d"


def test_osv_url_credentials_never_shown(tmp_path: Path, fake_osv: FakeOsv) -> None:
    """A user:password or ?key= in --osv-url is the user's secret: not in the table, JSON, SARIF or error line."""
    req = str(_req(tmp_path, "demo-web==2.19.0", "demo-safe==1.0"))
    with_user = fake_osv.url.replace("http://", f"http://user:{SECRET}@")
    sarif = tmp_path / "r.sarif"
    runs = [runner.invoke(app, ["audit", "-r", req, "--osv-url", with_user]),
            _audit("-r", req, "--osv-url", with_user, "--format", "sarif", "--output", str(sarif))]
    assert [r.exit_code for r in runs] == [1, 1], runs[0].output
    assert json.loads(runs[1].stdout)["service"]["url"] == fake_osv.url
    fake_osv.status = 500  # pip-audit's HTTPError names the URL it posted to
    runs.append(_audit("-r", req, "--osv-url", f"{fake_osv.url}?key={SECRET}"))
    runs.append(_audit("-r", req, "--osv-url", closed_port_url().replace("http://", f"http://u:{SECRET}@")))
    assert [r.exit_code for r in runs[2:]] == [3, 3]
    for text in [sarif.read_text(encoding="utf-8")] + [r.stdout + r.stderr for r in runs]:
        assert SECRET not in text


def test_incomplete_error_is_short_and_counts_problems(tmp_path: Path) -> None:
    req = _req(tmp_path, *(f"pkg{i}==1.0" for i in range(6)))
    result = runner.invoke(app, ["audit", "-r", str(req), "--osv-url", closed_port_url()])
    assert result.exit_code == 3
    assert result.stderr.count("unreachable") == 1  # one reason, the six packages it applies to
    assert "pkg0" in result.stderr and len(result.stderr.strip().splitlines()[-1]) < 600
    missing = runner.invoke(app, ["audit", str(tmp_path / "nothing-here"), "--osv-url", closed_port_url()])
    assert missing.exit_code == 3 and "0 item(s)" not in missing.stdout and "1 item(s)" in missing.stdout


def test_tokens_in_requirement_urls_never_shown(tmp_path: Path, fake_osv: FakeOsv) -> None:
    """Private git/URL requirements often carry a token: report them as not checked, without the token."""
    req = _req(tmp_path, "demo-safe==1.0", f"-e git+https://user:{SECRET}@github.com/o/r.git#egg=r",
               f"foo @ https://u:{SECRET}@host.example/foo-1.0.whl", f"git+https://{SECRET}@github.com/o/r2.git",
               f"-r https://u:{SECRET}@host.example/more.txt")
    (tmp_path / "pyproject.toml").write_text(
        f'[project]\nname = "x"\nversion = "1"\ndependencies = ["bar @ git+https://{SECRET}@github.com/o/bar.git"]\n',
        encoding="utf-8")
    sarif = tmp_path / "r.sarif"
    runs = [runner.invoke(app, ["audit", "-r", str(req), "-r", str(tmp_path / "pyproject.toml"),
                                "--osv-url", fake_osv.url]),
            _audit("-r", str(req), "-r", str(tmp_path / "pyproject.toml"), "--osv-url", fake_osv.url,
                   "--format", "sarif", "--output", str(sarif))]
    assert [r.exit_code for r in runs] == [3, 3]
    assert len(json.loads(runs[1].stdout)["unchecked"]) == 5
    for text in [sarif.read_text(encoding="utf-8")] + [r.stdout + r.stderr for r in runs]:
        assert SECRET not in text
