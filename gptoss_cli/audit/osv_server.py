"""A loopback OSV-compatible endpoint over a local ``OsvDatabase``, so pip-audit can audit air-gapped.

It speaks the part of the OSV API that pip-audit and similar clients use:

* ``POST /v1/query``       ``{"package": {"name", "ecosystem": "PyPI"}, "version"}`` → ``{"vulns": [...]}`` or ``{}``
* ``POST /v1/querybatch``  ``{"queries": [...]}`` → ``{"results": [{"vulns": [{"id", "modified"}]}]}``
* ``GET  /v1/vulns/{id}``  → the record, or 404

It binds 127.0.0.1 on a free port, runs in a daemon thread of this process, and stops when the context exits.
"""

from __future__ import annotations

import json
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator
from urllib.parse import unquote

from gptoss_cli.audit.osv_local import OsvDatabase

MAX_BODY = 1024 * 1024


def _answer_query(db: OsvDatabase, query: Any) -> dict[str, Any] | None:
    """The vulns for one query, or None when the query is not one we can answer (→ 400)."""
    if not isinstance(query, dict):
        return None
    package = query.get("package")
    version = query.get("version")
    if not isinstance(package, dict) or not isinstance(version, str) or not isinstance(package.get("name"), str):
        return None
    if package.get("ecosystem", "PyPI") != "PyPI":
        return {}
    vulns = db.query(package["name"], version)
    return {"vulns": vulns} if vulns else {}


class _Handler(BaseHTTPRequestHandler):
    server_version = "gptoss-osv-local"
    protocol_version = "HTTP/1.1"

    @property
    def db(self) -> OsvDatabase:
        return self.server.db  # type: ignore[attr-defined]

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        return  # quiet: stderr belongs to the command

    def _send(self, status: int, payload: Any) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        if length <= 0 or length > MAX_BODY:
            return None
        try:
            return json.loads(self.rfile.read(length))
        except ValueError:
            return None

    def do_POST(self) -> None:  # noqa: N802 - stdlib naming
        path = self.path.split("?", 1)[0].rstrip("/")
        body = self._body()
        if path == "/v1/query":
            answer = _answer_query(self.db, body)
            if answer is None:
                self._send(400, {"code": 3, "message": "invalid query"})
            else:
                self._send(200, answer)
        elif path == "/v1/querybatch":
            queries = body.get("queries") if isinstance(body, dict) else None
            if not isinstance(queries, list):
                self._send(400, {"code": 3, "message": "invalid batch"})
                return
            results = []
            for query in queries:
                answer = _answer_query(self.db, query) or {}
                short = [{"id": v.get("id"), "modified": v.get("modified")} for v in answer.get("vulns", [])]
                results.append({"vulns": short} if short else {})
            self._send(200, {"results": results})
        else:
            self._send(404, {"code": 5, "message": "not found"})

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        path = self.path.split("?", 1)[0]
        if path.startswith("/v1/vulns/"):
            record = self.db.get(unquote(path[len("/v1/vulns/"):]))
            if record is not None:
                self._send(200, record)
                return
        self._send(404, {"code": 5, "message": "not found"})


@contextmanager
def serve_osv(db: OsvDatabase) -> Iterator[str]:
    """Serve ``db`` on 127.0.0.1; yields the ``/v1/query`` URL to give pip-audit as ``--osv-url``."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    server.db = db  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True,
                              name="gptoss-osv-local")
    thread.start()
    try:
        host, port = server.server_address[:2]
        yield f"http://{host}:{port}/v1/query"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
