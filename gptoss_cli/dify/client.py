"""``DifyClient``: the Dify console API over an injected ``httpx.Client``.

It detects the version (``X-Version`` of ``GET /console/api/setup``), picks the protocol profile, logs in at most
once (Dify locks an account after 5 failures), keeps the session (Bearer token, or cookie jar + ``X-CSRF-Token``,
or the admin API key + ``X-WORKSPACE-ID`` with no cookies), refreshes an expired session once, retries connect
errors and 5xx with bounded backoff (5xx only where repeating is harmless), records every request in ``plan`` with
secrets masked, and under ``dry_run`` records state-changing requests without sending them.
"""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping
from urllib.parse import urlencode, urlsplit, urlunsplit

import httpx

from gptoss_cli.config import Secret
from gptoss_cli.dify.errors import (
    DifyError,
    DifyLoginError,
    DifyPermissionError,
    DifySessionError,
    DifyUnreachableError,
)
from gptoss_cli.dify.plan import PlanStep, mask_body, scrub
from gptoss_cli.dify.profiles import Profile, profile_for
from gptoss_cli.errors import UsageError
from gptoss_cli.redact import mask_url

API_PREFIX = "/console/api"
CSRF_COOKIES = ("csrf_token", "__Host-csrf_token")
_CONNECT_ERRORS = (httpx.ConnectError, httpx.ConnectTimeout)
_MAYBE_PROCESSED = (httpx.ReadTimeout, httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)
_LOCKOUT_HINT = "not retried: Dify locks the account for 24 h after 5 failed logins"


def normalize_dify_url(url: str) -> str:
    """``https://dify.example/console/api/`` → ``https://dify.example``; only http(s) URLs are accepted."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise UsageError(f"--dify-url must be an http(s) URL, got {mask_url(url)!r}",
                         hint="e.g. http://dify.example.com")
    path = parts.path.rstrip("/")
    if path.endswith(API_PREFIX):
        path = path[: -len(API_PREFIX)]
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


@dataclass(frozen=True)
class SetupState:
    version: str
    step: str
    version_source: str  # "header" or "override"


class DifyClient:
    """One run's conversation with one Dify console."""

    def __init__(
        self,
        http: httpx.Client,
        dify_url: str,
        *,
        dry_run: bool = False,
        retries: int = 3,
        backoff: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.http = http
        self._send_url = normalize_dify_url(dify_url)  # may carry user:password: requests only, never shown
        self.base_url = mask_url(self._send_url)
        self.dry_run = dry_run
        self.retries = retries
        self.backoff = backoff
        self._sleep = sleep
        self.plan: list[PlanStep] = []
        self.version: str | None = None
        self.profile: Profile | None = None
        self.session: str = "none"  # none | bearer | cookie | admin-key
        self.login_attempts = 0
        self._token: str | None = None
        self._refresh_token: str | None = None
        self._workspace_id: str | None = None
        self._secrets: list[str] = []

    # -- secrets ---------------------------------------------------------------------------------------------
    def add_secret(self, value: str | Secret | None) -> None:
        """Remember a secret value so it is masked in the plan and scrubbed from error messages."""
        raw = value.reveal() if isinstance(value, Secret) else value
        if raw and raw not in self._secrets:
            self._secrets.append(raw)

    def scrub(self, text: str) -> str:
        return scrub(text, self._secrets)

    # -- version ---------------------------------------------------------------------------------------------
    def detect(self, version_override: str | None = None) -> SetupState:
        """``GET /console/api/setup``: Dify's version (``X-Version``) and setup step, before any login."""
        resp = self._send("GET", "/setup", record=True, changes_state=False)
        header = resp.headers.get("x-version")
        if resp.is_redirect:
            raise DifyError(f"{self.base_url} redirects to {resp.headers.get('location')}",
                            hint="pass the URL it redirects to as --dify-url")
        data = _json_or_none(resp) if resp.status_code < 400 else None
        if resp.status_code == 404 or not (header or isinstance(data, dict)):
            raise DifyError(f"{self.base_url} does not answer like a Dify console (GET {API_PREFIX}/setup "
                            f"gave HTTP {resp.status_code})", hint="pass the URL you open Dify with in a browser")
        step = str(data.get("step", "unknown")) if isinstance(data, dict) else "unknown"
        if version_override:
            version, source = version_override, "override"
        elif header:
            version, source = header, "header"
        else:
            raise DifyError("Dify sent no X-Version header, so the login protocol cannot be chosen safely",
                            hint="pass --dify-version X.Y.Z (a proxy may strip the header)")
        self.version = version
        self.profile = profile_for(version)
        if step == "not_started":
            raise DifyError(f"Dify at {self.base_url} is not set up yet",
                            hint=f"create the admin account at {self.base_url}/install first")
        return SetupState(version=version, step=step, version_source=source)

    def _need_profile(self) -> Profile:
        if self.profile is None:  # pragma: no cover - programming error
            raise RuntimeError("call detect() first")
        return self.profile

    # -- authentication --------------------------------------------------------------------------------------
    def login(self, email: str, password: Secret) -> None:
        """Log in with at most one attempt per password encoding the profile allows (one, except 1.11.0/1)."""
        profile = self._need_profile()
        self.add_secret(password)
        encodings = profile.password_encodings
        for i, encoding in enumerate(encodings):
            sent = _encode_password(password.reveal(), encoding)
            self.add_secret(sent)
            body = {"email": email, "password": sent, "remember_me": False}
            self.login_attempts += 1
            resp = self._send("POST", "/login", json=body, record=True, changes_state=False, retry_5xx=False)
            data = _json_or_none(resp)
            if resp.status_code == 200 and isinstance(data, dict) and data.get("result") == "success":
                self._start_session(data)
                return
            if resp.status_code == 200:
                raise DifyLoginError(f"Dify refused the login: {self.scrub(str((data or {}).get('data')))}",
                                     hint="the account needs a workspace")
            if resp.status_code == 429:
                raise DifyLoginError("Dify has locked this account after too many failed logins",
                                     hint="wait for LOGIN_LOCKOUT_DURATION (default 24 h) or reset it in Dify",
                                     status=429)
            if resp.status_code in (400, 401):  # authentication_failed, email_or_password_mismatch, invalid_param
                if i + 1 < len(encodings):
                    continue  # the documented 1.11.0/1.11.1 ambiguity: one base64 try, then one plain try
                raise DifyLoginError(f"Dify rejected the email or password for {email}", hint=_LOCKOUT_HINT,
                                     status=resp.status_code, code=_code(data))
            self._raise_for_status(resp)
            raise DifyLoginError(f"unexpected login answer HTTP {resp.status_code}")  # pragma: no cover

    def _start_session(self, data: Mapping[str, Any]) -> None:
        tokens = data.get("data")
        if isinstance(tokens, dict) and tokens.get("access_token"):
            self.session = "bearer"
            self._token = str(tokens["access_token"])
            self._refresh_token = str(tokens.get("refresh_token") or "") or None
            self.add_secret(self._token)
            self.add_secret(self._refresh_token)
        else:
            self.session = "cookie"  # 1.9.2+: HttpOnly cookies + a readable csrf_token cookie
            for cookie in self.http.cookies.jar:
                self.add_secret(cookie.value)
            self._check_cookies()

    def _check_cookies(self) -> None:
        """Cookie sessions need the csrf_token cookie, and Secure cookies never travel over plain http."""
        jar = list(self.http.cookies.jar)
        unusable = self.base_url.startswith("http://") and any(c.secure for c in jar)
        if not unusable and self._csrf() is None:
            self.refresh()  # rotates all three cookies; once, and never a second login
        if unusable or self._csrf() is None:
            self.session = "none"  # nothing can use this session, logging out included
        if unusable:
            raise DifySessionError("Dify set Secure session cookies, which are never sent back over http://",
                                   hint="Dify's console runs on https: use its https URL as --dify-url")
        if self._csrf() is None:
            raise DifySessionError("Dify's login set no csrf_token cookie, so every console call would fail "
                                   "the CSRF check", hint="check a proxy in front of Dify keeps Set-Cookie headers"
                                                          ", or use the admin API key (Dify 1.11+)")

    def use_admin_key(self, key: Secret, workspace_id: str) -> None:
        """Admin-API-key mode: ``Authorization: Bearer <key>`` + ``X-WORKSPACE-ID``, never any cookie."""
        profile = self._need_profile()
        if not profile.admin_key:
            raise DifyError(f"the admin API key cannot reach the console of Dify {self.version} "
                            "(1.9.2-1.10 check CSRF with no bypass)",
                            hint="log in with --email and --password-env, or upgrade Dify to 1.11+")
        self.add_secret(key)
        self.session = "admin-key"
        self._token = key.reveal()
        self._workspace_id = workspace_id
        self.http.cookies.clear()

    def refresh(self) -> bool:
        """Renew an expired session once; False when Dify refuses (the caller then reports the session error)."""
        if self.session == "bearer" and self._refresh_token:
            resp = self._send("POST", "/refresh-token", json={"refresh_token": self._refresh_token},
                              record=True, changes_state=False, retry_5xx=False, auth=False)
            data = _json_or_none(resp)
            if resp.status_code == 200 and isinstance(data, dict) and isinstance(data.get("data"), dict):
                self._start_session(data)
                return True
            return False
        if self.session == "cookie":
            resp = self._send("POST", "/refresh-token", record=True, changes_state=False, retry_5xx=False,
                              auth=False)
            ok = resp.status_code == 200
            if ok:
                for cookie in self.http.cookies.jar:
                    self.add_secret(cookie.value)
            return ok
        return False

    def logout(self) -> None:
        """End the session; best effort (never raises, never retried)."""
        if self.session not in ("bearer", "cookie"):
            return
        try:
            self._send(self._need_profile().logout_method, "/logout", record=True, changes_state=False,
                       retry_5xx=False, retries=0)
        except Exception:  # noqa: BLE001 - logging out is a courtesy; failing to do so changes nothing
            pass
        self.session = "none"

    # -- requests --------------------------------------------------------------------------------------------
    def call(self, method: str, path: str, *, json: Any = None, params: Mapping[str, Any] | None = None,
             changes_state: bool = False) -> Any:
        """One authenticated console request; returns the parsed JSON (None for 204 or a dry-run skip)."""
        if self.dry_run and changes_state:
            self._record(method, path, json, params, sent=False, changes_state=True, status=None)
            return None
        resp = self._send(method, path, json=json, params=params, record=True, changes_state=changes_state)
        if resp.status_code == 401 and self.session in ("bearer", "cookie") and _refreshable(resp):
            if self.refresh():
                resp = self._send(method, path, json=json, params=params, record=True,
                                  changes_state=changes_state)
        return self._raise_for_status(resp)

    def planned(self, method: str, path: str, body: Any = None) -> None:
        """Record a request a dry run would make later (it depends on an answer a dry run cannot get)."""
        self._record(method, path, body, None, sent=False, changes_state=False, status=None)

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if self.session in ("bearer", "admin-key") and self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        if self.session == "admin-key" and self._workspace_id:
            headers["X-WORKSPACE-ID"] = self._workspace_id
        if self.session == "cookie":
            csrf = self._csrf()
            if csrf:
                headers["X-CSRF-Token"] = csrf
        return headers

    def _csrf(self) -> str | None:
        for cookie in self.http.cookies.jar:
            if cookie.name in CSRF_COOKIES:
                return cookie.value
        return None

    def _send(self, method: str, path: str, *, json: Any = None, params: Mapping[str, Any] | None = None,
              record: bool, changes_state: bool, retry_5xx: bool | None = None, auth: bool = True,
              retries: int | None = None) -> httpx.Response:
        if retry_5xx is None:
            retry_5xx = method in ("GET", "PUT", "DELETE") or not changes_state
        budget = self.retries if retries is None else retries
        url = self._send_url + API_PREFIX + path
        headers = self._headers() if auth else {"Accept": "application/json"}
        if self.session == "admin-key":
            self.http.cookies.clear()  # a cookie would make Dify treat the request as a cookie session
        for attempt in range(budget + 1):
            last = attempt == budget
            try:
                resp = self.http.request(method, url, json=json, params=params, headers=headers)
            except _CONNECT_ERRORS as exc:
                if last:
                    raise self._unreachable(exc, attempt + 1) from None
            except _MAYBE_PROCESSED as exc:
                if last or not retry_5xx:
                    raise self._unreachable(exc, attempt + 1) from None
            except httpx.HTTPError as exc:
                raise self._unreachable(exc, attempt + 1) from None
            else:
                if resp.headers.get("x-version") and self.version is None:
                    self.version = resp.headers["x-version"]
                if resp.status_code < 500 or not retry_5xx or last:
                    if record:
                        self._record(method, path, json, params, sent=True, changes_state=changes_state,
                                     status=resp.status_code)
                    if resp.status_code >= 500 and retry_5xx:
                        raise DifyUnreachableError(
                            f"Dify answered HTTP {resp.status_code} to {method} {API_PREFIX}{path} "
                            f"{attempt + 1} times", hint="check the Dify api container logs", )
                    return resp
            self._sleep(self.backoff * (2 ** attempt))
        raise AssertionError("unreachable")  # pragma: no cover

    def _unreachable(self, exc: Exception, attempts: int) -> DifyUnreachableError:
        detail = self.scrub(" ".join(str(exc).split()) or type(exc).__name__)
        return DifyUnreachableError(f"cannot reach Dify at {self.base_url} after {attempts} attempt(s): {detail}",
                                    hint="check --dify-url and that Dify is running")

    def _record(self, method: str, path: str, body: Any, params: Mapping[str, Any] | None, *, sent: bool,
                changes_state: bool, status: int | None) -> None:
        shown = API_PREFIX + path + (("?" + urlencode(dict(params))) if params else "")
        self.plan.append(PlanStep(method=method, path=shown, body=mask_body(body, self._secrets), sent=sent,
                                  changes_state=changes_state, status=status))

    def _raise_for_status(self, resp: httpx.Response) -> Any:
        """Parsed JSON of a 2xx answer, or the matching typed error (one line, Dify's reason kept)."""
        if resp.status_code < 300:
            return _json_or_none(resp)
        data = _json_or_none(resp)
        code = _code(data)
        message = self.scrub(_message(data) or resp.reason_phrase or "")
        where = f"{resp.request.method} {urlsplit(str(resp.request.url)).path}"
        if resp.status_code == 403:
            raise DifyPermissionError(
                f"Dify refused {where}: the account is not an admin or owner of the workspace",
                hint="log in as the workspace owner or an admin, or use the admin API key", status=403, code=code)
        if resp.status_code == 401:
            if code in ("not_setup", "not_init_validated"):
                raise DifyError(f"Dify at {self.base_url} is not set up yet ({code})",
                                hint=f"finish the install at {self.base_url}/install")
            raise DifySessionError(f"Dify did not accept the session for {where}: {message}",
                                   hint=_session_hint(message, self.base_url), status=401, code=code)
        raise DifyError(f"Dify answered HTTP {resp.status_code} to {where}: {message}",
                        status=resp.status_code, code=code)


def _session_hint(message: str, base_url: str) -> str:
    if "CSRF" in message and base_url.startswith("http://"):
        return ("the session cookies were not sent back; if Dify's console runs on https "
                "(Secure / __Host- cookies) use its https URL as --dify-url")
    if "CSRF" in message:
        return "log in again; if it persists, use the admin API key (Dify 1.11+)"
    return "check the account, or the admin API key and --workspace-id"


def _encode_password(password: str, encoding: str) -> str:
    if encoding == "base64":
        return base64.b64encode(password.encode("utf-8")).decode("ascii")
    return password


def _json_or_none(resp: httpx.Response) -> Any:
    if resp.status_code == 204 or not resp.content:
        return None
    try:
        return resp.json()
    except ValueError:
        return None


def _code(data: Any) -> str | None:
    return str(data["code"]) if isinstance(data, dict) and data.get("code") is not None else None


def _message(data: Any) -> str:
    if isinstance(data, dict):
        for key in ("message", "error", "data"):
            if isinstance(data.get(key), str) and data[key]:
                return " ".join(data[key].split())
    return ""


def _refreshable(resp: httpx.Response) -> bool:
    """Any 401 but "not set up": an expired cookie is simply not sent, so Dify may say "Invalid … token"."""
    return _code(_json_or_none(resp)) not in ("not_setup", "not_init_validated")


__all__ = ["API_PREFIX", "DifyClient", "SetupState", "normalize_dify_url"]
