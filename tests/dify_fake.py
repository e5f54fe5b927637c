"""A contract-faithful fake Dify console (and a tiny OpenAI-compatible stub) on 127.0.0.1, for the dify tests.

The fake follows reference/dify-api.md: ``X-Version`` on every answer, JSON tokens + Bearer below 1.9.2, HttpOnly
cookies + a readable ``csrf_token`` cookie + the ``X-CSRF-Token`` check on every protected call from 1.9.2, base64
login passwords from 1.11.2, the lockout counter (429 after 5 failures), the admin API key (+ X-WORKSPACE-ID, not
usable 1.9.2-1.10), the plugin install task, Dify's credential schema validation (unknown keys dropped, values must be
strings, select values must be options, required fields), a credential store with the 1.8+ multi-credential API or the
older ``POST …/models`` upsert, and the default-model quirk. Credential validation really calls the endpoint like
Dify does: ``POST {endpoint_url}/chat/completions`` with ``max_tokens`` 5 and one "ping" message, no ``stream`` key.
"""

from __future__ import annotations

import base64
import itertools
import json
import re
import threading
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx
from packaging.version import Version

from tests.dify_fake_schemas import PLUGIN_ID, schema_for

FULL_PROVIDER = "langgenius/openai_api_compatible/openai_api_compatible"
OTHER_PROVIDER = "langgenius/ollama/ollama"
CSRF_MESSAGE = "CSRF token is missing or invalid."


class Reply(Exception):
    """Raised inside a route to answer with an error (or any status) right away."""

    def __init__(self, status: int, body: Any = None, cookies: list[str] | None = None) -> None:
        super().__init__(status)
        self.status, self.body, self.cookies = status, body, cookies or []


def err(status: int, code: str, message: str) -> Reply:
    return Reply(status, {"code": code, "message": message, "status": status})


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    cookies: dict[str, str]
    body: Any
    status: int = 0


# -- a tiny threaded HTTP server shared by both fakes ---------------------------------------------------------
class _Server:
    def __init__(self, handle: Callable[[str, str, dict[str, str], bytes], tuple[int, dict, list, bytes]]) -> None:
        outer = handle

        class Handler(BaseHTTPRequestHandler):
            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                headers = {k.lower(): v for k, v in self.headers.items()}
                status, extra, cookies, payload = outer(self.command, self.path, headers, raw)
                self.send_response(status)
                for k, v in extra.items():
                    self.send_header(k, v)
                for c in cookies:
                    self.send_header("Set-Cookie", c)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _any

            def log_message(self, *args: Any) -> None:  # keep test output clean
                return None

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def port(self) -> int:
        return self.httpd.server_address[1]

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


# -- OpenAI-compatible stub -----------------------------------------------------------------------------------
class StubOpenAI:
    """``GET /v1/models`` and non-streaming ``POST /v1/chat/completions`` with optional Bearer key.

    Like gptoss serve it also answers under ``/no-reasoning/v1`` (``mount=False``: not there, like other servers),
    and answers a ``json_schema`` request with ``{"ok": true}`` (``structured=False``: ignores ``response_format``).
    """

    def __init__(self, model: str = "gpt-oss-20b", *, api_key: str | None = None, context: int | None = 131072,
                 chat_status: int = 200, obj: str = "chat.completion", mount: bool = True,
                 structured: bool = True) -> None:
        self.model, self.api_key, self.context = model, api_key, context
        self.chat_status, self.obj = chat_status, obj
        self.mount, self.structured = mount, structured
        self.requests: list[Seen] = []
        self._server = _Server(self._handle)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.port}/v1"

    def __enter__(self) -> "StubOpenAI":
        self._server.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.stop()

    def _handle(self, method: str, target: str, headers: dict[str, str], raw: bytes):
        parts = urlsplit(target)
        body = json.loads(raw) if raw else None
        self.requests.append(Seen(method, parts.path, {}, headers, {}, body))
        path = parts.path
        if self.mount and path.startswith("/no-reasoning/v1/"):
            path = path[len("/no-reasoning"):]
        if self.api_key and headers.get("authorization") != f"Bearer {self.api_key}":
            return _json(401, {"error": {"message": "invalid API key", "type": "invalid_request_error",
                                         "param": None, "code": "invalid_api_key"}})
        if method == "GET" and path == "/v1/models":
            entry: dict[str, Any] = {"id": self.model, "object": "model", "owned_by": "gptoss"}
            if self.context:
                entry["max_model_len"] = self.context
            return _json(200, {"object": "list", "data": [entry]})
        if method == "POST" and path == "/v1/chat/completions":
            if self.chat_status != 200:
                return _json(self.chat_status, {"error": {"message": "engine not ready", "type": "server_error",
                                                          "param": None, "code": None}})
            if body.get("model") != self.model:
                return _json(404, {"error": {"message": f"model {body.get('model')} not found",
                                             "type": "invalid_request_error", "param": "model", "code": None}})
            wants_json = (body.get("response_format") or {}).get("type") == "json_schema" and self.structured
            return _json(200, {"id": "chatcmpl-1", "object": self.obj, "created": 0, "model": self.model,
                               "choices": [{"index": 0, "message": {"role": "assistant",
                                                                    "content": '{"ok": true}' if wants_json else "pong"},
                                            "finish_reason": "length"}],
                               "usage": {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8}})
        return _json(404, {"error": {"message": "not found", "type": "invalid_request_error", "param": None,
                                     "code": None}})


def _json(status: int, body: Any, headers: dict | None = None, cookies: list | None = None):
    payload = b"" if body is None else json.dumps(body).encode()
    extra = {"Content-Type": "application/json", **(headers or {})}
    return status, extra, cookies or [], payload


# -- Dify console ---------------------------------------------------------------------------------------------
@dataclass
class Cred:
    id: str
    model: str
    name: str
    values: dict[str, str]


@dataclass
class FakeDify:
    version: str = "1.13.3"
    email: str = "admin@example.com"
    password: str = "Adm1n-Passw0rd"
    role: str = "owner"
    plugin_installed: bool = True
    plugin_version: str | None = None  # default: 0.0.20 on 1.0-1.7, 0.0.63 from 1.8 (the schema reported follows it)
    marketplace: bool = True
    admin_api_key: str | None = None
    workspace_id: str = "6f1c2b1e-0000-4000-8000-000000000001"
    cookie_prefix: bool = False  # __Host- names (Dify on https)
    secure_cookies: bool = False  # Secure flag: an http client never sends them back
    send_version: bool = True
    version_header: str | None = None  # lie about the version (proxy rewrote it)
    base64_login: bool | None = None  # default: from 1.11.2 on
    install_polls: int = 2
    setup_done: bool = True
    expire_tokens_after: int | None = None  # access token expires after this many authenticated uses
    expired_message: str = "Token has expired."  # "Invalid Authorization token." once the cookie itself expired
    csrf_on_login: bool = True  # False: login sets no csrf_token cookie (refresh still does)
    invalidate_csrf_after: int | None = None  # the csrf token stops verifying after this many uses
    other_models: tuple[tuple[str, str], ...] = ((OTHER_PROVIDER, "llama3"),)
    validate_timeout: float = 5.0
    # observed
    requests: list[Seen] = field(default_factory=list)
    validation_calls: list[dict[str, Any]] = field(default_factory=list)
    login_attempts: int = 0
    failed: dict[str, int] = field(default_factory=dict)
    mutations: int = 0
    # state
    creds: dict[str, Cred] = field(default_factory=dict)
    records: dict[str, dict[str, Any]] = field(default_factory=dict)  # model -> {"current": id} / {"values": …}
    defaults: list[dict[str, str]] = field(default_factory=list)
    tokens: dict[str, int] = field(default_factory=dict)  # access token -> uses
    refresh_tokens: set[str] = field(default_factory=set)
    csrf: dict[str, int] = field(default_factory=dict)  # valid csrf token -> uses
    tasks: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        v = Version(self.version)
        self.v = v
        self.cookie_session = v >= Version("1.9.2")
        self.creds_api = v >= Version("1.8.0")
        self.plugins = v >= Version("1.0.0")
        self.b64 = self.base64_login if self.base64_login is not None else v >= Version("1.11.2")
        self.admin_bypass = not (Version("1.9.2") <= v < Version("1.11.0"))
        self.provider = FULL_PROVIDER if self.plugins else "openai_api_compatible"
        if self.plugin_version is None:
            self.plugin_version = "0.0.20" if v < Version("1.8.0") else "0.0.63"
        self.schema = schema_for(self.version)
        self._ids = itertools.count(1)
        self._lock = threading.RLock()
        self._server = _Server(self._handle)
        self._http: httpx.Client | None = None

    # -- lifecycle
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.port}"

    def __enter__(self) -> "FakeDify":
        self._server.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.stop()
        if self._http is not None:
            self._http.close()

    def _new_id(self) -> str:
        return f"00000000-0000-4000-8000-{next(self._ids):012d}"

    # -- dispatch
    def _handle(self, method: str, target: str, headers: dict[str, str], raw: bytes):
        parts = urlsplit(target)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        cookie = SimpleCookie()
        cookie.load(headers.get("cookie", ""))
        cookies = {k: m.value for k, m in cookie.items()}
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        seen = Seen(method, parts.path, query, headers, cookies, body)
        with self._lock:
            self.requests.append(seen)
            vheader = {"X-Version": self.version_header or self.version} if self.send_version else {}
            try:
                status, data, set_cookies = 200, self._route(seen), []
                if isinstance(data, Reply):
                    raise data
            except Reply as r:
                status, data, set_cookies = r.status, r.body, r.cookies
            seen.status = status
            return _json(status, data, vheader, set_cookies)

    def _route(self, r: Seen) -> Any:
        p = r.path
        if not p.startswith("/console/api/"):
            raise Reply(404, {"message": "not found"})
        p = p[len("/console/api"):]
        if p == "/setup" and r.method == "GET":
            return {"step": "finished", "setup_at": "2026-01-01T00:00:00"} if self.setup_done else {
                "step": "not_started"}
        if not self.setup_done:
            raise err(401, "not_setup", "Please setup Dify first.")
        if p == "/login" and r.method == "POST":
            return self._login(r)
        if p == "/refresh-token" and r.method == "POST":
            return self._refresh(r)
        if p == "/logout":
            want = "POST" if self.cookie_session else "GET"
            if r.method != want:
                raise err(405, "method_not_allowed", "The method is not allowed for the requested URL.")
            return {"result": "success"}
        self._authenticate(r)
        return self._protected(r, p)

    # -- auth
    def _cookie(self, name: str) -> str:
        return ("__Host-" if self.cookie_prefix else "") + name

    def _set_session_cookies(self) -> list[str]:
        access, refresh, csrf = (f"tok-{self._new_id()}", f"ref-{self._new_id()}", f"csrf-{self._new_id()}")
        self.tokens[access] = 0
        self.refresh_tokens.add(refresh)
        self.csrf[csrf] = 0
        flags = "; Path=/; SameSite=Lax" + ("; Secure" if self.secure_cookies else "")
        return [f"{self._cookie('access_token')}={access}; HttpOnly; Max-Age=3600{flags}",
                f"{self._cookie('refresh_token')}={refresh}; HttpOnly; Max-Age=2592000{flags}",
                f"{self._cookie('csrf_token')}={csrf}; Max-Age=3600{flags}"]

    def _bearer_tokens(self) -> dict[str, str]:
        access, refresh = f"tok-{self._new_id()}", f"ref-{self._new_id()}"
        self.tokens[access] = 0
        self.refresh_tokens.add(refresh)
        return {"access_token": access, "refresh_token": refresh}

    def _login(self, r: Seen) -> Any:
        self.login_attempts += 1
        body = r.body or {}
        email, password = body.get("email"), body.get("password")
        if self.failed.get(email, 0) >= 5:
            raise err(429, "email_code_login_limit", "Too many login failures, please try again later.")
        if self.b64:
            try:
                password = base64.b64decode(str(password), validate=True).decode("utf-8")
            except (ValueError, UnicodeDecodeError):
                raise err(401, "authentication_failed", "Invalid encrypted data") from None
        if self.v < Version("1.9.0") and not re.match(r"^(?=.*[a-zA-Z])(?=.*\d).{8,}$", str(password)):
            raise err(400, "invalid_param", "Invalid password.")
        if email != self.email or password != self.password:
            self.failed[email] = self.failed.get(email, 0) + 1
            if self.v < Version("1.9.0"):
                raise err(400, "email_or_password_mismatch", "The email or password is mismatched.")
            raise err(401, "authentication_failed", "Invalid email or password.")
        self.failed[email] = 0
        if self.cookie_session:
            cookies = self._set_session_cookies()
            raise Reply(200, {"result": "success"}, cookies if self.csrf_on_login else cookies[:2])
        return {"result": "success", "data": self._bearer_tokens()}

    def _refresh(self, r: Seen) -> Any:
        if self.cookie_session:
            token = r.cookies.get(self._cookie("refresh_token"))
            if not token:
                raise Reply(401, {"result": "fail", "message": "No refresh token provided"})
            if token not in self.refresh_tokens:
                raise Reply(401, {"result": "fail", "message": "Invalid refresh token"})
            self.refresh_tokens.discard(token)
            raise Reply(200, {"result": "success"}, self._set_session_cookies())
        token = (r.body or {}).get("refresh_token")
        if token not in self.refresh_tokens:
            raise Reply(401, {"result": "fail", "data": "Invalid refresh token"})
        self.refresh_tokens.discard(token)
        return {"result": "success", "data": self._bearer_tokens()}

    def _authenticate(self, r: Seen) -> None:
        auth = r.headers.get("authorization", "")
        bearer = auth[7:] if auth.startswith("Bearer ") else None
        if self.admin_api_key and bearer == self.admin_api_key:
            if r.headers.get("x-workspace-id") != self.workspace_id:
                raise err(401, "unauthorized", "Invalid token.")
            if self.cookie_session and not self.admin_bypass:
                raise err(401, "unauthorized", CSRF_MESSAGE)
            r.headers["_role"] = "owner"
            return
        token = (r.cookies.get(self._cookie("access_token")) if self.cookie_session else None) or bearer
        if not token:
            raise err(401, "unauthorized", "Invalid Authorization token.")
        if token not in self.tokens:
            raise err(401, "unauthorized", "Invalid token.")
        if self.expire_tokens_after is not None and self.tokens[token] >= self.expire_tokens_after:
            raise err(401, "unauthorized", self.expired_message)
        if self.cookie_session:
            sent, jar = r.headers.get("x-csrf-token"), r.cookies.get(self._cookie("csrf_token"))
            if not sent or sent != jar or sent not in self.csrf:
                raise err(401, "unauthorized", CSRF_MESSAGE)
            if self.invalidate_csrf_after is not None and self.csrf[sent] >= self.invalidate_csrf_after:
                del self.csrf[sent]
                raise err(401, "unauthorized", CSRF_MESSAGE)
            self.csrf[sent] += 1
        self.tokens[token] += 1
        r.headers["_role"] = self.role

    def _need_admin(self, r: Seen) -> None:
        if r.headers.get("_role") not in ("owner", "admin"):
            raise err(403, "forbidden", "You don't have the permission to access the requested resource.")

    # -- protected routes
    def _protected(self, r: Seen, p: str) -> Any:
        from tests.dify_fake_routes import route_protected

        return route_protected(self, r, p)

    # -- credential validation, as Dify does it --------------------------------------------------------------
    def validate(self, model: str, creds: dict[str, Any]) -> dict[str, str]:
        """Schema check (400 on problems) then the live call; returns the stored (defaulted) values."""
        clean = self.check_schema(creds)
        problem = self.live_check(model, clean)
        if problem:
            raise err(400, "invalid_param", problem)
        return clean

    def check_schema(self, creds: dict[str, Any]) -> dict[str, str]:
        ctx = {**creds, "__model_type": "llm"}
        out: dict[str, str] = {}
        for f in self.schema["credential_form_schemas"]:
            var = f["variable"]
            if any(ctx.get(c["variable"]) != c["value"] for c in f.get("show_on") or ()):
                continue
            value = creds.get(var)
            if value is None or value == "":
                if f["required"]:
                    raise err(400, "invalid_param", f"Variable {var} is required")
                if f.get("default"):
                    out[var] = f["default"]
                continue
            if not isinstance(value, str):
                raise err(400, "invalid_param", f"Variable {var} should be string")
            if f["type"] == "select" and value not in [o["value"] for o in f["options"]]:
                raise err(400, "invalid_param", f"Variable {var} is not in options")
            out[var] = value
        return out

    def live_check(self, model: str, creds: dict[str, str]) -> str | None:
        url = urljoin(creds["endpoint_url"].rstrip("/") + "/", "chat/completions")
        headers = {"Content-Type": "application/json"}
        if creds.get("api_key"):
            headers["Authorization"] = f"Bearer {creds['api_key']}"
        name = model if not self.plugins else (creds.get("endpoint_model_name") or model)
        body = {"model": name, "max_tokens": 5, "messages": [{"role": "user", "content": "ping"}]}
        self.validation_calls.append({"url": url, "body": body, "headers": headers})
        if self._http is None:
            self._http = httpx.Client(trust_env=False, timeout=httpx.Timeout(self.validate_timeout, connect=2.0))
        try:
            resp = self._http.post(url, json=body, headers=headers)
        except httpx.HTTPError as exc:
            return f"An error occurred during credentials validation: {exc}"
        if resp.status_code != 200:
            tail = "" if not self.plugins else f" and response body {resp.text}"
            return f"Credentials validation failed with status code {resp.status_code}{tail}"
        try:
            data = resp.json()
        except ValueError:
            return "Credentials validation failed: JSON decode error"
        if data.get("object") not in (None, "", "chat.completion"):
            return ("Credentials validation failed: invalid response object, must be 'chat.completion', "
                    f"got '{data['object']}'")
        return None

    # -- helpers for tests
    def ours(self) -> list[Cred]:
        return list(self.creds.values())

    def state_changing(self) -> list[Seen]:
        """Requests that reached a route which changes Dify's data (GET default-model can create a record)."""
        reads = {"/login", "/refresh-token", "/logout", "/workspaces/current",
                 "/workspaces/current/plugin/list/installations/ids",
                 "/workspaces/current/plugin/list/latest-versions"}
        out = []
        for r in self.requests:
            path = r.path[len("/console/api"):]
            if (r.method == "GET" and path != "/workspaces/current/default-model") or path in reads or path.endswith("/models/credentials/validate"):
                continue
            out.append(r)
        return out
