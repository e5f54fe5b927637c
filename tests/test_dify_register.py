"""register() against the fake Dify console (tests/dify_fake.py) and a loopback OpenAI-compatible stub."""

from __future__ import annotations

import base64
import json
from dataclasses import asdict
from typing import Any, Iterator

import httpx
import pytest

from gptoss_cli.config import Secret
from gptoss_cli.dify import (
    CredentialsRejectedError,
    DifyClient,
    DifyError,
    DifyLoginError,
    DifyPermissionError,
    DifySessionError,
    DifyUnreachableError,
    EndpointCheckFailed,
    PluginMissingError,
    RegisterOptions,
    register,
)
from tests.dify_fake import FULL_PROVIDER, OTHER_PROVIDER, FakeDify, StubOpenAI

PROFILES = ["0.15.3", "1.5.0", "1.9.1", "1.13.3"]
SERVER_KEY = "sk-gptoss-server-key-123"


@pytest.fixture
def stub() -> Iterator[StubOpenAI]:
    with StubOpenAI() as s:
        yield s


def run(fake: FakeDify, endpoint: str | None, *, dry_run: bool = False, **kw: Any):
    kw.setdefault("email", fake.email)
    if "admin_api_key" not in kw:
        kw.setdefault("password", Secret(fake.password))
    kw.setdefault("plugin_poll_interval", 0.01)
    with httpx.Client(trust_env=False, timeout=10) as http:
        client = DifyClient(http, fake.url, dry_run=dry_run, backoff=0.01)
        return register(client, RegisterOptions(endpoint_url=endpoint, **kw))


def stored(fake: FakeDify) -> dict[str, str]:
    if fake.creds_api:
        (cred,) = fake.creds.values()
        return cred.values
    return fake.records["gpt-oss-20b"]["values"]


# -- the main path on every profile ---------------------------------------------------------------------------
@pytest.mark.parametrize("version", PROFILES)
def test_create_then_update_then_unregister(version: str, stub: StubOpenAI) -> None:
    with FakeDify(version=version) as fake:
        first = run(fake, stub.url)
        assert first.action == "created"
        assert first.dify_version == version
        values = stored(fake)
        assert values["endpoint_url"] == stub.url and values["function_calling_type"] == "tool_call"
        assert values["context_size"] == "131072" and values["stream_function_calling"] == "supported"
        if version != "0.15.3":
            assert values["structured_output_support"] == "supported"
        if version in ("1.9.1", "1.13.3"):
            assert values["agent_thought_support"] == "supported"
            assert first.credential_id and first.credential_name == "gptoss"
        # Dify's own check reached the endpoint the way Dify does it
        call = fake.validation_calls[-1]
        assert call["url"] == stub.url + "/chat/completions"
        assert call["body"] == {"model": "gpt-oss-20b", "max_tokens": 5,
                                "messages": [{"role": "user", "content": "ping"}]}
        assert "Authorization" not in call["headers"]

        second = run(fake, stub.url, context_size=32768, max_tokens=4096)
        assert second.action == "updated"
        assert stored(fake)["context_size"] == "32768" and stored(fake)["max_tokens_to_sample"] == "4096"
        if fake.creds_api:
            assert len(fake.creds) == 1 and second.credential_id == first.credential_id  # no "API KEY 2"
        assert list(fake.records) == ["gpt-oss-20b"]

        gone = run(fake, None, unregister=True)
        assert gone.action == "removed" and gone.removed
        assert fake.records == {} and fake.creds == {}
        again = run(fake, None, unregister=True)
        assert again.action == "absent"


@pytest.mark.parametrize("version", PROFILES)
def test_sent_values_are_strings_and_only_schema_fields(version: str, stub: StubOpenAI) -> None:
    with FakeDify(version=version) as fake:
        run(fake, stub.url, show_reasoning=False)
        writes = [r for r in fake.state_changing() if isinstance(r.body, dict) and "credentials" in r.body]
        assert writes
        names = {f["variable"] for f in fake.schema["credential_form_schemas"]}
        for w in writes:
            assert all(isinstance(v, str) for v in w.body["credentials"].values())
            assert set(w.body["credentials"]) <= names
        if version in ("1.9.1", "1.13.3"):
            assert stored(fake)["agent_thought_support"] == "not_supported"


def test_api_key_sent_to_endpoint_and_kept_out_of_results(stub: StubOpenAI) -> None:
    with StubOpenAI(api_key=SERVER_KEY) as keyed, FakeDify() as fake:
        result = run(fake, keyed.url, server_api_key=Secret(SERVER_KEY))
        assert fake.validation_calls[-1]["headers"]["Authorization"] == f"Bearer {SERVER_KEY}"
        assert result.credentials["api_key"] == "********"
        text = json.dumps(asdict(result), default=str)
        assert SERVER_KEY not in text and fake.password not in text
        # without the key, the endpoint's 401 stops the run in preflight, before Dify is touched
        with pytest.raises(EndpointCheckFailed):
            run(fake, keyed.url)


def test_served_model_name_differs(stub: StubOpenAI) -> None:
    with StubOpenAI(model="openai/gpt-oss-20b") as other, FakeDify() as fake:
        result = run(fake, other.url)
        assert result.action == "created"
        assert stored(fake)["endpoint_model_name"] == "openai/gpt-oss-20b"
        assert fake.validation_calls[-1]["body"]["model"] == "openai/gpt-oss-20b"


def test_endpoint_url_fixed_to_v1(stub: StubOpenAI) -> None:
    with FakeDify() as fake:
        base = stub.url[: -len("/v1")]
        result = run(fake, base + "/")
        assert result.endpoint_url == stub.url
        assert any("changed to" in w for w in result.warnings)


def test_loopback_endpoint_gets_no_docker_hint_when_dify_reaches_it(stub: StubOpenAI) -> None:
    """Dify on the same host validated http://127.0.0.1:…/v1: the Docker hint would be wrong (issue 16 item 5)."""
    with FakeDify() as fake:
        result = run(fake, stub.url)
        assert result.action == "created"
        assert not any("host.docker.internal" in w or "loopback" in w for w in result.warnings)


# -- default model: GET → POST → GET, with Dify's quirk ---------------------------------------------------------
@pytest.mark.parametrize("version", ["0.15.3", "1.13.3"])
def test_set_default_survives_the_quirk(version: str, stub: StubOpenAI) -> None:
    with FakeDify(version=version) as fake:
        result = run(fake, stub.url, set_default=True)
        provider = FULL_PROVIDER if version != "0.15.3" else "openai_api_compatible"
        assert result.default_model == f"{provider}/gpt-oss-20b"
        methods = [(r.method, r.path) for r in fake.requests if r.path.endswith("/default-model")]
        assert [m for m, _ in methods] == ["GET", "POST", "GET"]
        assert all(d["model_type"] == "text-generation" for d in fake.defaults)


def test_quirk_is_real_in_the_fake(stub: StubOpenAI) -> None:
    """A client that POSTs without GETting first leaves an invisible record; the fake reproduces that."""
    with FakeDify() as fake:
        run(fake, stub.url)
        with httpx.Client(trust_env=False, timeout=5) as http:
            c = DifyClient(http, fake.url)
            c.detect()
            c.login(fake.email, Secret(fake.password))
            c.call("POST", "/workspaces/current/default-model", json={"model_settings": [
                {"model_type": "llm", "provider": FULL_PROVIDER, "model": "gpt-oss-20b"}]}, changes_state=True)
            got = c.call("GET", "/workspaces/current/default-model", params={"model_type": "llm"})
        assert got["data"]["provider"]["provider"] == OTHER_PROVIDER


# -- dry run ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("version", ["0.15.3", "1.13.3"])
def test_dry_run_changes_nothing(version: str, stub: StubOpenAI) -> None:
    with FakeDify(version=version) as fake:
        result = run(fake, stub.url, dry_run=True, set_default=True)
        assert result.dry_run and result.action == "would-create"
        assert fake.mutations == 0 and fake.state_changing() == []
        unsent = [s for s in result.plan if not s.sent]
        assert any(s.method in ("POST", "PUT") and "credentials" in json.dumps(s.body) for s in unsent)
        assert result.validation == "ok"
        text = json.dumps(asdict(result), default=str)
        assert fake.password not in text and base64.b64encode(fake.password.encode()).decode() not in text
        # after a real run, a dry run plans an update
        run(fake, stub.url)
        before = fake.mutations
        again = run(fake, stub.url, dry_run=True)
        assert again.action == "would-update" and fake.mutations == before
        removal = run(fake, None, dry_run=True, unregister=True)
        assert removal.action == "would-remove" and fake.mutations == before and fake.records
        assert any(s.method == "DELETE" and not s.sent for s in removal.plan)


def test_dry_run_plans_plugin_install(stub: StubOpenAI) -> None:
    with FakeDify(plugin_installed=False) as fake:
        result = run(fake, stub.url, dry_run=True, install_plugin=True)
        assert result.plugin == "would-install" and fake.plugin_installed is False
        assert fake.state_changing() == []
        assert any(s.path.endswith("/install/marketplace") and not s.sent for s in result.plan)


# -- login: one attempt ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("version", PROFILES + ["1.10.1"])
def test_wrong_password_is_one_attempt(version: str, stub: StubOpenAI) -> None:
    with FakeDify(version=version) as fake:
        with pytest.raises(DifyLoginError) as info:
            run(fake, stub.url, password=Secret("Wrong-passw0rd"))
        assert fake.login_attempts == 1
        assert info.value.exit_code == 3
        assert "Wrong-passw0rd" not in info.value.one_line()


def test_base64_password_from_1_11_2(stub: StubOpenAI) -> None:
    with FakeDify(version="1.13.3") as fake:
        run(fake, stub.url)
        (login,) = [r for r in fake.requests if r.path.endswith("/login")]
        assert login.body["password"] == base64.b64encode(fake.password.encode()).decode()
    with FakeDify(version="1.10.1") as fake:
        run(fake, stub.url)
        (login,) = [r for r in fake.requests if r.path.endswith("/login")]
        assert login.body["password"] == fake.password


@pytest.mark.parametrize("server_b64", [True, False])
def test_1_11_1_ambiguity_tries_each_encoding_once(server_b64: bool, stub: StubOpenAI) -> None:
    with FakeDify(version="1.11.1", base64_login=server_b64) as fake:
        assert run(fake, stub.url).action == "created"
        assert fake.login_attempts == (1 if server_b64 else 2)
    with FakeDify(version="1.11.1", base64_login=server_b64) as fake:
        with pytest.raises(DifyLoginError):
            run(fake, stub.url, password=Secret("Wrong-passw0rd"))
        assert fake.login_attempts == 2


def test_locked_account(stub: StubOpenAI) -> None:
    with FakeDify() as fake:
        fake.failed[fake.email] = 5
        with pytest.raises(DifyLoginError, match="locked"):
            run(fake, stub.url)
        assert fake.login_attempts == 1


# -- sessions: CSRF, refresh, admin key -----------------------------------------------------------------------
def test_cookie_session_sends_csrf_on_every_call(stub: StubOpenAI) -> None:
    with FakeDify(version="1.13.3") as fake:
        run(fake, stub.url, set_default=True)
        after_login = [r for r in fake.requests if r.path not in ("/console/api/setup", "/console/api/login")]
        assert after_login and all(r.headers.get("x-csrf-token") for r in after_login)
        assert all("authorization" not in r.headers for r in after_login)


def test_csrf_cookie_not_sent_back_is_one_clear_error(stub: StubOpenAI) -> None:
    """Secure cookies over http: the CSRF check fails; one line, one login, no loop."""
    with FakeDify(version="1.13.3", secure_cookies=True) as fake:
        with pytest.raises(DifySessionError) as info:
            run(fake, stub.url)
        assert "Secure" in info.value.one_line() and "https" in info.value.one_line()
        assert fake.login_attempts == 1 and fake.mutations == 0
        assert [r.path for r in fake.requests][-1] == "/console/api/login"  # nothing sent that would fail


def test_csrf_cookie_missing_is_one_clear_error(stub: StubOpenAI, monkeypatch: pytest.MonkeyPatch) -> None:
    """A proxy dropped the csrf_token cookie: say so at once instead of failing every call."""
    with FakeDify(version="1.13.3") as fake:
        real = fake._set_session_cookies
        monkeypatch.setattr(fake, "_set_session_cookies", lambda: real()[:2])
        with pytest.raises(DifySessionError) as info:
            run(fake, stub.url)
        assert "csrf_token" in info.value.one_line()
        assert fake.login_attempts == 1 and fake.mutations == 0


def test_request_without_csrf_header_is_refused_by_the_fake(stub: StubOpenAI) -> None:
    with FakeDify(version="1.13.3") as fake:
        with httpx.Client(trust_env=False, timeout=5) as http:
            c = DifyClient(http, fake.url)
            c.detect()
            c.login(fake.email, Secret(fake.password))
            resp = http.post(fake.url + "/console/api/workspaces/current")
        assert resp.status_code == 401 and resp.json()["message"] == "CSRF token is missing or invalid."


def test_csrf_invalidated_midway_is_refreshed(stub: StubOpenAI) -> None:
    with FakeDify(version="1.13.3", invalidate_csrf_after=2) as fake:
        assert run(fake, stub.url).action == "created"
        assert any(r.path.endswith("/refresh-token") for r in fake.requests)
        assert fake.login_attempts == 1


def test_host_prefixed_cookies(stub: StubOpenAI) -> None:
    with FakeDify(version="1.13.3", cookie_prefix=True) as fake:
        assert run(fake, stub.url).action == "created"


@pytest.mark.parametrize("version", ["1.9.1", "1.13.3"])
def test_expired_token_is_refreshed_once(version: str, stub: StubOpenAI) -> None:
    with FakeDify(version=version, expire_tokens_after=1) as fake:
        assert run(fake, stub.url).action == "created"
        assert fake.login_attempts == 1
        assert sum(r.path.endswith("/refresh-token") for r in fake.requests) >= 1


def test_version_header_lies_session_follows_login_answer(stub: StubOpenAI) -> None:
    """X-Version says 1.9.1 (JSON tokens) but the server sets cookies: the client follows the answer."""
    with FakeDify(version="1.10.1", version_header="1.9.1") as fake:
        assert run(fake, stub.url).action == "created"
        assert fake.login_attempts == 1


def test_missing_version_header(stub: StubOpenAI) -> None:
    with FakeDify(send_version=False) as fake:
        with pytest.raises(DifyError, match="X-Version"):
            run(fake, stub.url)
        assert fake.login_attempts == 0
        assert run(fake, stub.url, dify_version="1.13.3").action == "created"


@pytest.mark.parametrize("version", ["0.15.3", "1.9.1", "1.13.3"])
def test_admin_api_key_mode(version: str, stub: StubOpenAI) -> None:
    key = "admin-key-very-secret-42"
    with FakeDify(version=version, admin_api_key=key) as fake:
        result = run(fake, stub.url, email=None, admin_api_key=Secret(key), workspace_id=fake.workspace_id)
        assert result.action == "created" and result.auth == "admin-key"
        assert fake.login_attempts == 0
        protected = [r for r in fake.requests if r.path != "/console/api/setup"]
        assert all(r.headers.get("x-workspace-id") == fake.workspace_id for r in protected)
        assert all(not r.cookies for r in protected)
        assert key not in json.dumps(asdict(result), default=str)


def test_admin_api_key_refused_on_1_10(stub: StubOpenAI) -> None:
    with FakeDify(version="1.10.1", admin_api_key="k") as fake:
        with pytest.raises(DifyError) as info:
            run(fake, stub.url, email=None, admin_api_key=Secret("k"), workspace_id=fake.workspace_id)
        assert "1.11" in info.value.one_line() and fake.requests[-1].path == "/console/api/setup"


def test_admin_api_key_wrong_workspace(stub: StubOpenAI) -> None:
    with FakeDify(version="1.13.3", admin_api_key="k") as fake:
        with pytest.raises(DifySessionError):
            run(fake, stub.url, email=None, admin_api_key=Secret("k"), workspace_id="nope")


# -- permissions, plugin, Dify's validation, reachability ------------------------------------------------------
def test_not_admin(stub: StubOpenAI) -> None:
    with FakeDify(role="normal") as fake:
        with pytest.raises(DifyPermissionError) as info:
            run(fake, stub.url)
        assert "admin or owner" in info.value.one_line() and info.value.exit_code == 3
        assert fake.mutations == 0


def test_plugin_missing_explains(stub: StubOpenAI) -> None:
    with FakeDify(plugin_installed=False) as fake:
        with pytest.raises(PluginMissingError) as info:
            run(fake, stub.url)
        assert "--install-plugin" in info.value.one_line()


def test_install_plugin_polls_task(stub: StubOpenAI) -> None:
    with FakeDify(plugin_installed=False, install_polls=3) as fake:
        result = run(fake, stub.url, install_plugin=True)
        assert result.plugin == "installed-now" and result.action == "created"
        assert sum("/plugin/tasks/" in r.path for r in fake.requests) == 4


def test_install_plugin_without_marketplace(stub: StubOpenAI) -> None:
    with FakeDify(plugin_installed=False, marketplace=False) as fake:
        with pytest.raises(PluginMissingError, match="marketplace"):
            run(fake, stub.url, install_plugin=True)


def test_validation_failure_carries_difys_reason() -> None:
    """Dify cannot reach the endpoint (the CLI can't either): preflight warns, Dify's reason is translated."""
    with StubOpenAI() as gone:
        dead = gone.url
    with FakeDify() as fake:
        with pytest.raises(CredentialsRejectedError) as info:
            run(fake, dead)
        line = info.value.one_line()
        assert "An error occurred during credentials validation" in line
        assert "host.docker.internal" in line
        assert fake.creds == {}


def test_preflight_http_failure_stops_before_dify() -> None:
    with StubOpenAI(chat_status=503) as sick, FakeDify() as fake:
        with pytest.raises(EndpointCheckFailed, match="503"):
            run(fake, sick.url)
        assert fake.requests == []


def test_preflight_can_be_skipped_then_dify_reports() -> None:
    with StubOpenAI(obj="text_completion") as odd, FakeDify(version="1.9.1") as fake:
        with pytest.raises(CredentialsRejectedError, match="invalid response object"):
            run(fake, odd.url, preflight=False)
        assert [r.path for r in odd.requests] == ["/v1/chat/completions"]


def test_dify_unreachable_bounded_retries(stub: StubOpenAI) -> None:
    with FakeDify() as fake:
        url = fake.url
    sleeps: list[float] = []
    with httpx.Client(trust_env=False, timeout=2) as http:
        client = DifyClient(http, url, retries=3, backoff=0.01, sleep=sleeps.append)
        with pytest.raises(DifyUnreachableError) as info:
            register(client, RegisterOptions(endpoint_url=stub.url, email="a@b.c", password=Secret("x1yyyyyy")))
    assert sleeps == [0.01, 0.02, 0.04]
    assert "4 attempt" in info.value.one_line() and info.value.exit_code == 3


def test_5xx_retried_on_reads_never_on_login(stub: StubOpenAI, monkeypatch: pytest.MonkeyPatch) -> None:
    with FakeDify() as fake:
        original = fake._route
        fails = {"setup": 2}

        def flaky(r):  # noqa: ANN001, ANN202
            if r.path.endswith("/setup") and fails["setup"]:
                fails["setup"] -= 1
                from tests.dify_fake import Reply

                raise Reply(502, {"message": "bad gateway"})
            return original(r)

        monkeypatch.setattr(fake, "_route", flaky)
        assert run(fake, stub.url).action == "created"
        assert sum(r.path.endswith("/setup") for r in fake.requests) == 3

        def login_502(r):  # noqa: ANN001, ANN202
            if r.path.endswith("/login"):
                from tests.dify_fake import Reply

                raise Reply(502, {"message": "bad gateway"})
            return original(r)

        monkeypatch.setattr(fake, "_route", login_502)
        fake.requests.clear()
        with pytest.raises(DifyError) as info:
            run(fake, stub.url)
        assert "502" in info.value.one_line()
        assert sum(r.path.endswith("/login") for r in fake.requests) == 1  # a login is never repeated


def test_not_set_up(stub: StubOpenAI) -> None:
    with FakeDify(setup_done=False) as fake:
        with pytest.raises(DifyError) as info:
            run(fake, stub.url)
        assert "/install" in info.value.one_line()
        assert fake.login_attempts == 0
