"""Pure pieces of gptoss_cli.dify: profiles, URL rules, the credential form, masking, preflight, retries."""

from __future__ import annotations

import json

import httpx
import pytest

from gptoss_cli.config import Secret
from gptoss_cli.dify import DifyClient, DifyError, DifyUnreachableError, preflight, profile_for
from gptoss_cli.dify.client import normalize_dify_url
from gptoss_cli.dify.credentials import Desired, build_credentials, fallback_schema, normalize_endpoint_url
from gptoss_cli.dify.plan import PlanStep, mask_body
from gptoss_cli.dify.preflight import loopback_warning
from gptoss_cli.errors import UsageError
from tests.dify_fake_schemas import schema_for


@pytest.mark.parametrize(("version", "name", "session", "api", "encodings", "admin"), [
    ("0.15.3", "0.15", "bearer", "upsert", ("plain",), True),
    ("1.0.0", "1.0-1.7", "bearer", "upsert", ("plain",), True),
    ("1.7.2", "1.0-1.7", "bearer", "upsert", ("plain",), True),
    ("1.8.0", "1.8-1.9.1", "bearer", "credentials", ("plain",), True),
    ("1.9.1", "1.8-1.9.1", "bearer", "credentials", ("plain",), True),
    ("1.9.2", "1.9.2-1.10", "cookie", "credentials", ("plain",), False),
    ("1.10.1", "1.9.2-1.10", "cookie", "credentials", ("plain",), False),
    ("1.11.0", "1.11.0-1.11.1", "cookie", "credentials", ("base64", "plain"), True),
    ("1.11.2", "1.11.2+", "cookie", "credentials", ("base64",), True),
    ("v1.17.1", "1.11.2+", "cookie", "credentials", ("base64",), True),
    ("2.0.0-beta.2", "1.11.2+", "cookie", "credentials", ("base64",), True),
])
def test_profiles(version: str, name: str, session: str, api: str, encodings: tuple, admin: bool) -> None:
    p = profile_for(version)
    assert (p.name, p.session, p.model_api, p.password_encodings, p.admin_key) == (name, session, api, encodings,
                                                                                  admin)
    assert p.provider == ("openai_api_compatible" if name == "0.15" else
                          "langgenius/openai_api_compatible/openai_api_compatible")


def test_bad_version_is_usage_error() -> None:
    with pytest.raises(UsageError):
        profile_for("latest")


@pytest.mark.parametrize(("given", "fixed"), [
    ("http://h:8000/v1", "http://h:8000/v1"),
    ("http://h:8000/v1/", "http://h:8000/v1"),
    ("http://h:8000", "http://h:8000/v1"),
    ("http://h:8000/", "http://h:8000/v1"),
    ("https://h/gpt/v1/chat/completions", "https://h/gpt/v1"),
    ("http://h:8000/v1/models", "http://h:8000/v1"),
])
def test_endpoint_url_fixed(given: str, fixed: str) -> None:
    url, note = normalize_endpoint_url(given)
    assert url == fixed and (note is None) == (given == fixed)


@pytest.mark.parametrize("bad", ["http://h:8000/api", "ftp://h/v1", "h:8000/v1", "http:///v1"])
def test_endpoint_url_refused(bad: str) -> None:
    with pytest.raises(UsageError):
        normalize_endpoint_url(bad)


def test_dify_url() -> None:
    assert normalize_dify_url("http://d.example/console/api/") == "http://d.example"
    assert normalize_dify_url("https://d.example/dify/") == "https://d.example/dify"
    with pytest.raises(UsageError):
        normalize_dify_url("d.example")


def _desired(**kw) -> Desired:  # noqa: ANN003
    base = dict(endpoint_url="http://h:8000/v1", api_key="", context_size=131072, max_tokens=8192)
    return Desired(**{**base, **kw})


def test_form_for_015_fills_required_defaults_and_drops_unknown() -> None:
    form = build_credentials(schema_for("0.15.3"), _desired(), required_default=True)
    assert form.credentials["vision_support"] == "no_support"  # required in 0.15, so sent with its default
    assert "agent_thought_support" not in form.credentials
    assert set(form.dropped) == {"agent_thought_support", "structured_output_support"}
    assert all(isinstance(v, str) for v in form.credentials.values())


def test_form_for_plugin_skips_other_model_types_and_strings_only() -> None:
    form = build_credentials(schema_for("1.13.3"), _desired(show_reasoning=False, api_key="k"),
                             required_default=False)
    assert "max_chunks" not in form.credentials  # text-embedding only
    assert form.credentials["agent_thought_support"] == "not_supported"
    assert form.credentials["context_size"] == "131072" and form.credentials["api_key"] == "k"
    assert form.credentials["stream_mode_delimiter"] == "\\n\\n" and form.dropped == ()


def test_form_drops_select_values_outside_options() -> None:
    schema = fallback_schema()
    for f in schema["credential_form_schemas"]:
        if f["variable"] == "function_calling_type":
            f["options"] = [{"value": "no_call"}, {"value": "function_call"}]
    form = build_credentials(schema, _desired(), required_default=False)
    assert "function_calling_type" not in form.credentials and form.dropped == ("function_calling_type",)


def test_form_unknown_required_field_is_an_error() -> None:
    schema = fallback_schema()
    schema["credential_form_schemas"].append({"variable": "region", "type": "text-input", "required": True,
                                              "default": None, "show_on": []})
    with pytest.raises(DifyError, match="region"):
        build_credentials(schema, _desired(), required_default=False)


def test_masking() -> None:
    body = {"email": "a@b.c", "password": "pw", "credentials": {"api_key": "sk-1", "endpoint_url": "http://x"},
            "note": "contains sk-1 inside"}
    masked = mask_body(body, ["sk-1"])
    assert masked["password"] == "********" and masked["credentials"]["api_key"] == "********"
    assert masked["note"] == "contains ******** inside" and body["password"] == "pw"
    assert mask_body({"api_key": ""}, [])["api_key"] == ""
    line = PlanStep("PUT", "/console/api/x", masked, sent=False, changes_state=True).line()
    assert line.startswith("PUT /console/api/x {") and line.endswith("[not sent: dry run]")


def test_loopback_warning_variants() -> None:
    assert loopback_warning("http://10.0.0.5:8000/v1", "http://localhost") is None
    local = loopback_warning("http://127.0.0.1:8000/v1", "http://localhost", lan="192.168.1.7")
    assert "host.docker.internal:8000" in local and "192.168.1.7:8000" in local
    remote = loopback_warning("http://localhost:8000/v1", "https://dify.corp.example", lan="192.168.1.7")
    assert "dify.corp.example" in remote and "http://192.168.1.7:8000/v1" in remote
    assert loopback_warning("http://[::1]:8000/v1", "http://dify") is not None


def _mock(handler) -> httpx.Client:  # noqa: ANN001
    return httpx.Client(transport=httpx.MockTransport(handler))


def test_preflight_judges_like_dify() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/models":
            return httpx.Response(200, json={"data": [{"id": "served-name", "context_length": 2048}]})
        body = json.loads(request.content)
        assert body == {"model": "served-name", "max_tokens": 5, "messages": [{"role": "user", "content": "ping"}]}
        assert request.headers["authorization"] == "Bearer k"
        return httpx.Response(200, json={"choices": []})  # no "object": Dify accepts it

    with _mock(handler) as http:
        r = preflight(http, "http://h/v1", "gpt-oss-20b", api_key=Secret("k"))
    assert r.chat_ok and r.served_model == "served-name" and r.context_size == 2048 and r.chat_ms is not None

    def wrong_object(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/models":
            return httpx.Response(404)
        return httpx.Response(200, json={"object": "text_completion"})

    with _mock(wrong_object) as http:
        r = preflight(http, "http://h/v1", "gpt-oss-20b")
    assert not r.chat_ok and "invalid response object" in (r.problem or "")


def test_preflight_unreachable_is_not_an_exception() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with _mock(refuse) as http:
        r = preflight(http, "http://h/v1", "m")
    assert not r.reachable and "connection refused" in (r.problem or "")


def test_retries_5xx_on_reads_only() -> None:
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.method)
        return httpx.Response(503, json={"message": "busy"}, headers={"X-Version": "1.13.3"})

    sleeps: list[float] = []
    with _mock(handler) as http:
        client = DifyClient(http, "http://d", retries=2, backoff=0.1, sleep=sleeps.append)
        with pytest.raises(DifyUnreachableError, match="3 times"):
            client.call("GET", "/x")
        assert calls == ["GET"] * 3 and sleeps == [0.1, 0.2]
        calls.clear()
        with pytest.raises(DifyError, match="503"):
            client.call("POST", "/y", json={}, changes_state=True)
        assert calls == ["POST"]  # a write that may have happened is never repeated


def test_connect_errors_retried_even_for_writes() -> None:
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.method)
        if len(calls) < 3:
            raise httpx.ConnectError("refused", request=request)
        return httpx.Response(201, json={"result": "success"})

    with _mock(handler) as http:
        client = DifyClient(http, "http://d", retries=3, backoff=0, sleep=lambda s: None)
        assert client.call("POST", "/y", json={}, changes_state=True) == {"result": "success"}
    assert calls == ["POST"] * 3
