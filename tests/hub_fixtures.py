"""A loopback Hub (and ModelScope) server that real clients download from, with fault modes and byte counters.

Routes (hub-git-audit.md §1.2 and §2.3):

    GET  /api/models/{org}/{name}/revision/{rev}          {"id", "sha", "siblings"}
    GET  /api/models/{org}/{name}/tree/{rev}[?recursive]  [{"type", "path", "size", "oid", "lfs"?, "xetHash"?}]
    HEAD|GET /{org}/{name}/resolve/{rev}/{path}           bytes; X-Repo-Commit, (X-Linked-)ETag/Size, Range
    GET  /cdn/{sha256}                                     LFS bytes on the *other* origin (http://localhost:port)
    GET  /api/v1/models/{org}/{name}/repo/files?Revision=  ModelScope listing {"Code", "Data": {"Files": [...]}}
    GET  /api/v1/models/{org}/{name}/repo?FilePath=        ModelScope bytes

Faults are attributes of the server, set by tests (per file path where it makes sense): ``cut_after``,
``ignore_range``, ``fail_5xx``, ``api_5xx``, ``corrupt``, ``extra_tree``, ``xet``, ``redirect_lfs``,
``pause_after`` (+ ``paused``/``release`` events), ``require_token``, ``cut_every`` (every GET of a path ends after
that many body bytes), ``trickle`` (route kinds ``api``/``resolve`` whose whole answer, headers included, goes out
one byte every ``trickle_interval`` seconds: a mirror at 1 byte/s), ``html`` (every API route answers an HTML page).
``bytes_sent[path]`` counts body bytes written, ``requests`` records every request (method, route, file, Range,
whether Authorization was sent).
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator, Optional
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from tests.hub_fixtures_data import (DEFAULT_SELECTION, FakeFile, FakeRepo, git_blob_id, random_bytes, sha256_of,
                                     tiny_model_files)

SEND_CHUNK = 64 * 1024


class FakeHub:
    """The server. Use as a context manager or through the ``fake_hub`` fixture."""

    def __init__(self, repos: Optional[list[FakeRepo]] = None) -> None:
        self.repos: dict[str, FakeRepo] = {r.repo_id: r for r in repos or []}
        self.lock = threading.Lock()
        self.bytes_sent: dict[str, int] = {}
        self.requests: list[dict[str, Any]] = []
        # fault modes
        self.cut_after: dict[str, int] = {}
        self.ignore_range = False
        self.fail_5xx: dict[str, int] = {}
        self.api_5xx = 0
        self.corrupt: dict[str, int] = {}
        self.extra_tree: list[dict[str, Any]] = []
        self.xet = False
        self.redirect_lfs = False
        self.pause_after: dict[str, int] = {}
        self.paused = threading.Event()
        self.release = threading.Event()
        self.require_token: Optional[str] = None
        self.cut_every: dict[str, int] = {}
        self.trickle: set[str] = set()
        self.trickle_interval = 1.0
        self.html = False
        self.use_sendfile = True
        self._server: Optional[ThreadingHTTPServer] = None

    def add(self, repo: FakeRepo) -> FakeRepo:
        self.repos[repo.repo_id] = repo
        return repo

    # -- lifecycle ---------------------------------------------------------------------------------------------------

    def start(self) -> "FakeHub":
        hub = self

        class Handler(_Handler):
            server_hub = hub

        self._server = _QuietServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="fake-hub", daemon=True).start()
        return self

    def stop(self) -> None:
        self.release.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def __enter__(self) -> "FakeHub":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def cdn_url(self) -> str:
        return f"http://localhost:{self.port}"  # another origin for clients: same server

    def file_requests(self, path: str) -> list[dict[str, Any]]:
        return [r for r in self.requests if r.get("file") == path and r["method"] == "GET"]

    def count(self, path: str, n: int) -> None:
        with self.lock:
            self.bytes_sent[path] = self.bytes_sent.get(path, 0) + n

    def take(self, table: dict[str, int], path: str) -> bool:
        """Consume one occurrence of a one-shot fault for ``path``."""
        with self.lock:
            left = table.get(path, 0)
            if left <= 0:
                return False
            table[path] = left - 1
            return True


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients killed mid-transfer (the point of several tests) are not errors


_API_INFO = re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+)/revision/(?P<rev>[^/]+)$")
_API_TREE = re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+)/tree/(?P<rev>[^/]+)(?:/(?P<path>.*))?$")
_RESOLVE = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<path>.+)$")
_CDN = re.compile(r"^/cdn/(?P<sha>[0-9a-f]{64})$")
_MS_FILES = re.compile(r"^/api/v1/models/(?P<repo>[^/]+/[^/]+)/repo/files$")
_MS_FILE = re.compile(r"^/api/v1/models/(?P<repo>[^/]+/[^/]+)/repo$")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_hub: FakeHub

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
        pass

    # -- helpers -----------------------------------------------------------------------------------------------------

    def _record(self, **extra: Any) -> None:
        hub = self.server_hub
        with hub.lock:
            hub.requests.append({"method": self.command, "path": urlsplit(self.path).path,
                                 "range": self.headers.get("Range"), "host": self.headers.get("Host"),
                                 "auth": self.headers.get("Authorization") is not None, **extra})

    def _json(self, status: int, body: Any, headers: Optional[dict[str, str]] = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _html(self) -> None:
        data = b"<!doctype html><html><body><h1>Welcome to our portal</h1></body></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, code: str = "", message: str = "error") -> None:
        self._json(status, {"error": message}, {"X-Error-Code": code} if code else None)

    def _authorized(self) -> bool:
        token = self.server_hub.require_token
        return token is None or self.headers.get("Authorization") == f"Bearer {token}"

    def _repo_rev(self, repo_id: str, rev: str) -> tuple[Optional[FakeRepo], Optional[str]]:
        repo = self.server_hub.repos.get(repo_id)
        if repo is None:
            return None, None
        rev = unquote(rev)
        if rev in repo.branches:
            return repo, repo.branches[rev]
        return repo, (rev if rev == repo.commit else None)

    # -- dispatch ----------------------------------------------------------------------------------------------------

    def do_HEAD(self) -> None:
        self._route()

    def do_GET(self) -> None:
        self._route()

    def _route(self) -> None:
        hub = self.server_hub
        path = urlsplit(self.path).path
        kind = "api" if path.startswith("/api/") else "resolve" if "/resolve/" in path else "other"
        if kind in hub.trickle:
            self.wfile = _Trickle(self.wfile, hub)  # type: ignore[assignment]
        try:
            self._dispatch()
        except (BrokenPipeError, ConnectionResetError, socket.timeout):
            self.close_connection = True

    def _dispatch(self) -> None:
        hub = self.server_hub
        split = urlsplit(self.path)
        path = split.path
        if m := _CDN.match(path):
            return self._cdn(m["sha"])
        api = path.startswith("/api/")
        if api and hub.api_5xx > 0:
            with hub.lock:
                hub.api_5xx -= 1
            self._record(kind="api")
            return self._error(503, message="overloaded")
        if api and hub.html:
            self._record(kind="html")
            return self._html()
        if not self._authorized():
            self._record(kind="denied")
            return self._error(401, "RepoNotFound", "unauthorized")
        if m := _API_INFO.match(path):
            return self._info(m["repo"], m["rev"])
        if m := _API_TREE.match(path):
            return self._tree(m["repo"], m["rev"])
        if m := _RESOLVE.match(path):
            return self._resolve(m["repo"], m["rev"], unquote(m["path"]))
        if m := _MS_FILES.match(path):
            return self._ms_files(m["repo"], parse_qs(split.query))
        if m := _MS_FILE.match(path):
            return self._ms_file(m["repo"], parse_qs(split.query))
        self._record(kind="unknown")
        self._error(404, "EntryNotFound", "no such route")

    # -- Hub routes --------------------------------------------------------------------------------------------------

    def _info(self, repo_id: str, rev: str) -> None:
        self._record(kind="info")
        repo, commit = self._repo_rev(repo_id, rev)
        if repo is None:
            return self._error(404, "RepoNotFound", "repository not found")
        if commit is None:
            return self._error(404, "RevisionNotFound", "revision not found")
        siblings = [{"rfilename": p} for p in sorted(repo.files)]
        self._json(200, {"id": repo.repo_id, "sha": commit, "siblings": siblings})

    def _tree(self, repo_id: str, rev: str) -> None:
        self._record(kind="tree")
        repo, commit = self._repo_rev(repo_id, rev)
        if repo is None:
            return self._error(404, "RepoNotFound", "repository not found")
        if commit is None:
            return self._error(404, "RevisionNotFound", "revision not found")
        entries: list[dict[str, Any]] = []
        dirs = sorted({"/".join(p.split("/")[:i]) for p in repo.files for i in range(1, p.count("/") + 1)})
        entries += [{"type": "directory", "path": d, "oid": hashlib.sha1(d.encode()).hexdigest(), "size": 0}
                    for d in dirs]
        for f in sorted(repo.files.values(), key=lambda f: f.path):
            entry: dict[str, Any] = {"type": "file", "path": f.path, "size": f.size, "oid": f.oid}
            if f.lfs:
                entry["lfs"] = {"oid": f.sha256, "size": f.size, "pointerSize": 131}
                if self.server_hub.xet:
                    entry["xetHash"] = hashlib.sha256(f.sha256.encode()).hexdigest()
            entries.append(entry)
        entries += self.server_hub.extra_tree
        self._json(200, entries)

    def _file_headers(self, repo: FakeRepo, f: FakeFile) -> dict[str, str]:
        headers = {"X-Repo-Commit": repo.commit, "ETag": f'"{f.sha256 if f.lfs else f.oid}"',
                   "Accept-Ranges": "bytes"}
        if f.lfs:
            headers.update({"X-Linked-Etag": f'"{f.sha256}"', "X-Linked-Size": str(f.size)})
        if self.server_hub.xet and f.lfs:
            headers["X-Xet-Hash"] = hashlib.sha256(f.sha256.encode()).hexdigest()
            headers["Link"] = f"<{self.server_hub.url}/api/models/{repo.repo_id}/xet-read-token/{repo.commit}>; " \
                              'rel="xet-auth"'
        return headers

    def _resolve(self, repo_id: str, rev: str, file_path: str) -> None:
        hub = self.server_hub
        self._record(kind="resolve", file=file_path)
        repo, commit = self._repo_rev(repo_id, rev)
        if repo is None:
            return self._error(404, "RepoNotFound", "repository not found")
        if commit is None:
            return self._error(404, "RevisionNotFound", "revision not found")
        f = repo.files.get(file_path)
        if f is None:
            return self._error(404, "EntryNotFound", "entry not found")
        headers = self._file_headers(repo, f)
        if f.lfs and hub.redirect_lfs:
            headers["Location"] = f"{hub.cdn_url}/cdn/{f.sha256}"
            headers["Content-Length"] = "0"
            self.send_response(302)
            for k, v in headers.items():
                self.send_header(k, v)
            self.end_headers()
            return
        self._send_file(f, headers)

    def _cdn(self, sha: str) -> None:
        for repo in self.server_hub.repos.values():
            for f in repo.files.values():
                if f.sha256 == sha:
                    self._record(kind="cdn", file=f.path)
                    return self._send_file(f, {"ETag": f'"{sha}"', "Accept-Ranges": "bytes"})
        self._record(kind="cdn")
        self._error(404)

    # -- ModelScope routes -------------------------------------------------------------------------------------------

    def _ms_files(self, repo_id: str, query: dict[str, list[str]]) -> None:
        self._record(kind="ms-files")
        repo, commit = self._repo_rev(repo_id, query.get("Revision", ["master"])[0])
        if repo is None or commit is None:
            return self._json(404, {"Code": 10010202, "Message": "model not found", "Success": False})
        files = [{"Name": p.split("/")[-1], "Path": p, "Type": "blob", "Size": f.size, "Sha256": f.sha256,
                  "IsLFS": f.lfs, "Revision": commit} for p, f in sorted(repo.files.items())]
        for d in sorted({p.rsplit("/", 1)[0] for p in repo.files if "/" in p}):
            files.append({"Name": d.split("/")[-1], "Path": d, "Type": "tree", "Size": 0, "Sha256": "",
                          "Revision": commit})
        files += self.server_hub.extra_tree
        self._json(200, {"Code": 200, "Data": {"Files": files}, "Message": "success", "Success": True})

    def _ms_file(self, repo_id: str, query: dict[str, list[str]]) -> None:
        file_path = query.get("FilePath", [""])[0]
        self._record(kind="ms-file", file=file_path)
        repo, commit = self._repo_rev(repo_id, query.get("Revision", ["master"])[0])
        f = repo.files.get(file_path) if repo is not None and commit is not None else None
        if f is None:
            return self._json(404, {"Code": 10010205, "Message": "file not found", "Success": False})
        self._send_file(f, {"Accept-Ranges": "bytes"})

    # -- body --------------------------------------------------------------------------------------------------------

    def _range_start(self, size: int) -> Optional[int]:
        value = self.headers.get("Range")
        if not value or self.server_hub.ignore_range:
            return None
        m = re.match(r"^bytes=(\d+)-$", value.strip())
        return int(m.group(1)) if m else None

    def _send_file(self, f: FakeFile, headers: dict[str, str]) -> None:
        hub = self.server_hub
        if self.command == "GET" and hub.take(hub.fail_5xx, f.path):
            return self._error(503, message="try again")
        start = self._range_start(f.size)
        if start is not None and start >= f.size:
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{f.size}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(206 if start is not None else 200)
        for k, v in headers.items():
            self.send_header(k, v)
        begin = start or 0
        if start is not None:
            self.send_header("Content-Range", f"bytes {begin}-{f.size - 1}/{f.size}")
        self.send_header("Content-Length", str(f.size - begin))
        self.send_header("Content-Type", "application/octet-stream")
        self.end_headers()
        if self.command == "HEAD":
            return
        corrupt = hub.take(hub.corrupt, f.path)
        cut = hub.cut_after.pop(f.path, None)
        if cut is None and f.path in hub.cut_every:
            cut = hub.cut_every[f.path]
        pause = hub.pause_after.pop(f.path, None)
        plain = not (corrupt or cut is not None or pause is not None or isinstance(self.wfile, _Trickle))
        if plain and hub.use_sendfile and isinstance(f.content, Path):
            with open(f.content, "rb") as fh:
                self.wfile.flush()
                sent = self.connection.sendfile(fh, begin, f.size - begin)
            hub.count(f.path, sent)
            return
        self._write_body(f, begin, corrupt, cut, pause)

    def _chunks(self, f: FakeFile, begin: int) -> Iterator[bytes]:
        if isinstance(f.content, bytes):
            for i in range(begin, f.size, SEND_CHUNK):
                yield f.content[i:i + SEND_CHUNK]
        else:
            with open(f.content, "rb") as fh:
                fh.seek(begin)
                while chunk := fh.read(SEND_CHUNK):
                    yield chunk

    def _write_body(self, f: FakeFile, begin: int, corrupt: bool, cut: Optional[int], pause: Optional[int]) -> None:
        hub = self.server_hub
        sent = 0
        for chunk in self._chunks(f, begin):
            if corrupt and sent == 0:
                chunk = bytes([chunk[0] ^ 0xFF]) + chunk[1:]
            for limit, action in ((cut, "cut"), (pause, "pause")):
                if limit is not None and sent < limit <= sent + len(chunk):
                    head = chunk[: limit - sent]
                    self.wfile.write(head)
                    self.wfile.flush()
                    hub.count(f.path, len(head))
                    sent += len(head)
                    chunk = chunk[len(head):]
                    if action == "cut":
                        self.close_connection = True
                        self.connection.shutdown(socket.SHUT_RDWR)
                        return
                    hub.paused.set()
                    hub.release.wait(timeout=60)
            if chunk:
                self.wfile.write(chunk)
                hub.count(f.path, len(chunk))
                sent += len(chunk)
        self.wfile.flush()


class _Trickle:
    """A write side that sends one byte per ``hub.trickle_interval`` seconds until the hub stops."""

    def __init__(self, raw: Any, hub: FakeHub) -> None:
        self.raw, self.hub = raw, hub

    def write(self, data: bytes) -> int:
        for i in range(len(data)):
            if self.hub.release.is_set():
                raise BrokenPipeError("fake hub stopped")
            self.raw.write(data[i:i + 1])
            self.raw.flush()
            self.hub.release.wait(self.hub.trickle_interval)
        return len(data)

    def flush(self) -> None:
        self.raw.flush()


@pytest.fixture
def fake_hub() -> Iterator[FakeHub]:
    """A running FakeHub holding ``org/tiny`` (see :func:`tiny_model_files`)."""
    with FakeHub([FakeRepo.build("org/tiny", tiny_model_files())]) as hub:
        yield hub


__all__ = ["DEFAULT_SELECTION", "FakeFile", "FakeHub", "FakeRepo", "fake_hub", "git_blob_id", "random_bytes",
           "sha256_of", "tiny_model_files"]
