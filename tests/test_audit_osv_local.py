"""The local OSV export: schema-conformant version matching, loading, and the loopback OSV endpoint."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest

from gptoss_cli.audit.osv_local import load_osv_db, record_affects
from gptoss_cli.audit.osv_server import serve_osv
from gptoss_cli.errors import CouldNotRun, UsageError
from tests.osv_fixtures import EXPORT_RECORDS, record, write_export_dir, write_export_zip


def _affects(events, version, **kw) -> bool:  # noqa: ANN001
    return record_affects(record("X-1", "pkg", events, **kw), "pkg", version)


@pytest.mark.parametrize(("version", "expected"), [
    ("0.0.0a1", True),    # introduced "0" is below every version, pre-releases included
    ("0.dev0", True),
    ("2.19.0", True),
    ("2.20.0rc1", True),  # a pre-release of the fix is still before it
    ("2.20.0", False),
    ("2.20.0.post1", False),
    ("3.0", False),
])
def test_introduced_zero_and_fixed(version: str, expected: bool) -> None:
    assert _affects([{"introduced": "0"}, {"fixed": "2.20.0"}], version) is expected


@pytest.mark.parametrize(("version", "expected"), [
    ("0.9", False), ("1.0rc1", False), ("1.0", True), ("1.5", True), ("1.5.post1", False), ("1.5.1", False),
    ("1.5+cu121", True),    # local build of an affected release: compared by its public version
    ("1.6+local", False),
])
def test_last_affected_is_inclusive(version: str, expected: bool) -> None:
    assert _affects([{"introduced": "1.0"}, {"last_affected": "1.5"}], version) is expected


@pytest.mark.parametrize(("version", "expected"), [
    ("0.5", True), ("1.0", False), ("1.9", False), ("2.0", True), ("3.0rc1", True), ("3.0rc2", False), ("3.0", False),
])
def test_two_intervals_unsorted_events(version: str, expected: bool) -> None:
    events = [{"fixed": "3.0rc2"}, {"introduced": "2.0"}, {"fixed": "1.0"}, {"introduced": "0"}]  # any order
    assert _affects(events, version) is expected


def test_versions_list_withdrawn_ecosystem_and_names() -> None:
    listed = record("MAL-1", "Some_Pkg", versions=["0.1.0", "0.2"])
    assert record_affects(listed, "some-pkg", "0.2.0")  # PEP 440 equality, PEP 503 names
    assert record_affects(listed, "SOME.PKG", "0.1.0+build1")
    assert not record_affects(listed, "some-pkg", "0.3")
    withdrawn = record("W-1", "pkg", [{"introduced": "0"}], withdrawn="2026-01-01T00:00:00Z")
    assert not record_affects(withdrawn, "pkg", "1.0")
    npm = record("N-1", "pkg", [{"introduced": "0"}], ecosystem="npm")
    assert not record_affects(npm, "pkg", "1.0")
    assert not record_affects(record("O-1", "other", [{"introduced": "0"}]), "pkg", "1.0")


def test_broken_data_is_conservative() -> None:
    assert _affects([{"introduced": "not-a-version"}, {"fixed": "2.0"}], "1.0")  # bad introduced → from "0"
    assert not _affects([{"introduced": "not-a-version"}, {"fixed": "2.0"}], "2.0")
    assert _affects([{"fixed": "2.0"}], "1.0")  # no introduced → from "0"
    assert record_affects({"id": "E-1", "affected": [{"package": {"name": "pkg", "ecosystem": "PyPI"}}]}, "pkg", "9")
    assert not _affects([{"introduced": "0"}, {"limit": "1.0"}], "1.0")
    assert not record_affects(record("X-2", "pkg", [{"introduced": "0"}]), "pkg", "not a version")


@pytest.mark.parametrize("kind", ["zip", "dir", "json"])
def test_load_export_and_query(tmp_path: Path, kind: str) -> None:
    if kind == "zip":
        path = write_export_zip(tmp_path / "all.zip")
    elif kind == "dir":
        path = write_export_dir(tmp_path / "osv")
        (path / "broken.json").write_text("{not json", encoding="utf-8")
    else:
        path = tmp_path / "records.json"
        path.write_text(json.dumps(EXPORT_RECORDS), encoding="utf-8")
    with load_osv_db(path) as db:
        info = db.info.to_dict()
        assert info["records"] == len(EXPORT_RECORDS) - 1  # the npm-only record is not a PyPI advisory
        assert info["withdrawn"] == 1
        assert info["newest_modified"] == "2026-11-01T00:00:00Z"
        assert info["unreadable"] == (1 if kind == "dir" else 0)
        assert [r["id"] for r in db.query("Demo_Web", "2.19.0")] == ["GHSA-demo-0001-aaaa"]  # withdrawn dropped
        assert db.query("demo-web", "2.20.0") == []
        assert [r["id"] for r in db.query("edge-two", "2.5")] == ["GHSA-edge-0005-eeee"]
        assert db.get("MAL-2099-6")["id"] == "MAL-2099-6"


def test_load_errors(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="does not exist"):
        load_osv_db(tmp_path / "nope.zip")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CouldNotRun, match="no PyPI advisories"):
        load_osv_db(tmp_path / "empty")
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(CouldNotRun):
        load_osv_db(bad)


def _post(url: str, payload: object) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=json.dumps(payload).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_loopback_server_speaks_the_osv_api(tmp_path: Path) -> None:
    with load_osv_db(write_export_zip(tmp_path / "all.zip")) as db, serve_osv(db) as url:
        assert url.startswith("http://127.0.0.1:") and url.endswith("/v1/query")
        status, body = _post(url, {"package": {"name": "demo-web", "ecosystem": "PyPI"}, "version": "2.19.0"})
        assert status == 200 and [v["id"] for v in body["vulns"]] == ["GHSA-demo-0001-aaaa"]
        assert _post(url, {"package": {"name": "demo-web", "ecosystem": "PyPI"}, "version": "2.20.0"}) == (200, {})
        assert _post(url, {"version": "1"})[0] == 400
        base = url[: -len("/v1/query")]
        status, body = _post(base + "/v1/querybatch", {"queries": [
            {"package": {"name": "edge-listed", "ecosystem": "PyPI"}, "version": "0.1.0"},
            {"package": {"name": "edge-listed", "ecosystem": "PyPI"}, "version": "9"}]})
        assert status == 200 and body["results"][0]["vulns"][0]["id"] == "MAL-2099-6" and body["results"][1] == {}
        with urllib.request.urlopen(base + "/v1/vulns/GHSA-edge-0004-dddd", timeout=5) as resp:
            assert json.loads(resp.read())["id"] == "GHSA-edge-0004-dddd"
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(base + "/v1/vulns/NOPE", timeout=5)
