"""Test doubles for the audit area: a fake OSV service on 127.0.0.1 and small OSV exports.

The fake service speaks what pip-audit 2.10.1 calls (``POST /v1/query``: ``{"package": {"name", "ecosystem"},
"version"}`` → ``{"vulns": [...]}`` or ``{}``) plus ``/v1/querybatch`` and ``GET /v1/vulns/{id}``. Unlike the
production loopback server it does NOT evaluate ranges: ``answers`` maps (name, version) to record ids explicitly,
so tests of pip-audit's handling do not depend on gptoss's own matcher. Records are made-up, illustrative data.
"""

from __future__ import annotations

import json
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator

import pytest


def record(vid: str, package: str, events: list[dict[str, str]] | None = None, *, aliases: tuple[str, ...] = (),
           versions: list[str] | None = None, withdrawn: str | None = None, summary: str | None = None,
           modified: str = "2026-11-01T00:00:00Z", ecosystem: str = "PyPI") -> dict[str, Any]:
    affected: dict[str, Any] = {"package": {"name": package, "ecosystem": ecosystem}}
    if events is not None:
        affected["ranges"] = [{"type": "ECOSYSTEM", "events": events}]
    if versions is not None:
        affected["versions"] = versions
    out: dict[str, Any] = {
        "schema_version": "1.6.0", "id": vid, "modified": modified, "published": "2026-01-01T00:00:00Z",
        "aliases": list(aliases), "summary": summary or f"made-up advisory {vid} in {package}", "affected": [affected],
    }
    if withdrawn:
        out["withdrawn"] = withdrawn
    return out


# A small, made-up advisory set used by the online fake and by the export fixtures.
RECORDS: dict[str, dict[str, Any]] = {
    "GHSA-demo-0001-aaaa": record("GHSA-demo-0001-aaaa", "demo-web", [{"introduced": "0"}, {"fixed": "2.20.0"}],
                                  aliases=("CVE-2099-1001", "PYSEC-2099-1")),
    "GHSA-demo-0002-bbbb": record("GHSA-demo-0002-bbbb", "demo-nofix", [{"introduced": "1.0"}],
                                  aliases=("CVE-2099-1002",)),
    "GHSA-demo-0003-cccc": record("GHSA-demo-0003-cccc", "demo-web", [{"introduced": "0"}, {"fixed": "2.19.5"}],
                                  withdrawn="2026-06-01T00:00:00Z"),
}


class FakeOsv:
    """A fake OSV API on 127.0.0.1. ``answers[(name, version)]`` = record ids; ``status`` forces an HTTP error."""

    def __init__(self) -> None:
        self.records: dict[str, dict[str, Any]] = dict(RECORDS)
        self.answers: dict[tuple[str, str], list[str]] = {
            ("demo-web", "2.19.0"): ["GHSA-demo-0001-aaaa", "GHSA-demo-0003-cccc"],
            ("demo-nofix", "1.4"): ["GHSA-demo-0002-bbbb"],
        }
        self.status: int | None = None
        self.queries: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                return

            def _send(self, status: int, payload: Any) -> None:
                body = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                if fake.status is not None:
                    self._send(fake.status, {"code": 13, "message": "forced failure"})
                    return
                if self.path == "/v1/query":
                    with fake._lock:
                        fake.queries.append(body)
                    self._send(200, fake.answer(body))
                elif self.path == "/v1/querybatch":
                    results = [{"vulns": [{"id": v["id"]} for v in fake.answer(q).get("vulns", [])]}
                               for q in body.get("queries", [])]
                    self._send(200, {"results": results})
                else:
                    self._send(404, {"code": 5, "message": "not found"})

            def do_GET(self) -> None:  # noqa: N802
                vid = self.path.rsplit("/", 1)[-1]
                if self.path.startswith("/v1/vulns/") and vid in fake.records:
                    self._send(200, fake.records[vid])
                else:
                    self._send(404, {"code": 5, "message": "not found"})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def answer(self, body: dict[str, Any]) -> dict[str, Any]:
        key = (body.get("package", {}).get("name"), body.get("version"))
        ids = self.answers.get(key, [])
        return {"vulns": [self.records[i] for i in ids]} if ids else {}

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/v1/query"

    def __enter__(self) -> "FakeOsv":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def fake_osv() -> Iterator[FakeOsv]:
    with FakeOsv() as fake:
        yield fake


def closed_port_url() -> str:
    """A loopback URL where nothing listens (connection refused at once)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1/query"


# -- OSV exports (for --osv-db) -----------------------------------------------------------------------------------
EXPORT_RECORDS: list[dict[str, Any]] = [
    *RECORDS.values(),
    # last_affected is inclusive; pre-releases order before their release
    record("GHSA-edge-0004-dddd", "edge-lib", [{"introduced": "1.0"}, {"last_affected": "1.5"}]),
    # two intervals, fixed at a pre-release
    record("GHSA-edge-0005-eeee", "edge-two", [{"introduced": "0"}, {"fixed": "1.0"}, {"introduced": "2.0"},
                                               {"fixed": "3.0rc2"}], aliases=("CVE-2099-1005",)),
    # explicit versions list only (a malicious-package style record)
    record("MAL-2099-6", "edge-listed", versions=["0.1.0", "0.2.0"]),
    # same name, other ecosystem: must not match
    record("GHSA-edge-0007-gggg", "demo-web", [{"introduced": "0"}], ecosystem="npm"),
]


def write_export_zip(path: Path, records: list[dict[str, Any]] | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for rec in EXPORT_RECORDS if records is None else records:
            zf.writestr(f"{rec['id']}.json", json.dumps(rec))
        zf.writestr("README.txt", "not a record")
    return path


def write_export_dir(path: Path, records: list[dict[str, Any]] | None = None) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    for rec in EXPORT_RECORDS if records is None else records:
        (path / f"{rec['id']}.json").write_text(json.dumps(rec), encoding="utf-8")
    return path
