"""Every error in the OpenAI envelope with the right status: bad input, auth, size, model, readiness, engine."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import AsyncIterator

import pytest

from gptoss_cli.config import Secret
from gptoss_cli.serve.openai.app import create_app
from gptoss_cli.serve.engines.interface import SamplingParams
from gptoss_cli.serve.engines.scripted import ScriptedEngine
from gptoss_cli.serve.settings import ServeSettings
from tests.serve_fixtures import FINAL, USER_HI, ready_client, scripted, sse_events

KEY = "sk-test-very-secret-9f8e7d"


def _assert_envelope(r, status, code=None, param=None):
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert err["message"] and "Traceback" not in r.text and 'File "' not in r.text
    if code is not None:
        assert err["code"] == code
    if param is not None:
        assert err["param"] == param
    return err


@pytest.mark.parametrize(
    "payload, param",
    [
        ({"messages": USER_HI, "n": 2}, "n"),
        ({"messages": USER_HI, "temperature": 3}, "temperature"),
        ({"messages": USER_HI, "top_p": 0}, "top_p"),
        ({"messages": USER_HI, "max_tokens": 0}, "max_tokens"),
        ({"messages": USER_HI, "presence_penalty": 9}, "presence_penalty"),
        ({"messages": USER_HI, "reasoning_effort": "extreme"}, "reasoning_effort"),
        ({"messages": USER_HI, "logprobs": True}, "logprobs"),
        ({"messages": USER_HI, "stop": ["x"] * 17}, "stop"),
        ({"messages": []}, "messages"),
        ({}, "messages"),
        ({"messages": [{"role": "wizard", "content": "hi"}]}, "messages[0].role"),
        ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
         "messages[0].content"),
        ({"messages": USER_HI, "tool_choice": "required"}, "tool_choice"),
        ({"messages": USER_HI, "response_format": {"type": "json_schema"}}, "response_format"),
        ({"messages": USER_HI, "response_format": {"type": "json_schema",
                                                    "json_schema": {"name": "x", "schema": {"type": 5}}}},
         "response_format"),
    ],
)
def test_bad_input_is_400_not_422(payload, param):
    app, engine = scripted(FINAL)
    with ready_client(app) as client:
        r = client.post("/v1/chat/completions", json=payload)
    err = _assert_envelope(r, 400, param=param)
    assert err["type"] == "invalid_request_error"
    assert engine.prompts == []


def test_invalid_json_and_non_object_bodies():
    app, _ = scripted(FINAL)
    with ready_client(app) as client:
        bad = client.post("/v1/chat/completions", content=b"{bad", headers={"content-type": "application/json"})
        text = client.post("/v1/chat/completions", content=b"hello")
        prompts = client.post("/v1/completions", json={"prompt": ["a", "b"]})
    assert "not valid JSON" in _assert_envelope(bad, 400)["message"]
    _assert_envelope(text, 400)
    _assert_envelope(prompts, 400, param="prompt")


def test_context_length_exceeded_gives_the_numbers():
    app, engine = scripted(FINAL, max_model_len=300)
    with ready_client(app) as client:
        over = client.post("/v1/chat/completions", json={"messages": USER_HI, "max_tokens": 200})
        huge = client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "x" * 400}]})
        ok = client.post("/v1/chat/completions", json={"messages": USER_HI, "max_tokens": 20})
    err = _assert_envelope(over, 400, code="context_length_exceeded", param="messages")
    assert "300" in err["message"] and "200 in the completion" in err["message"]
    assert "300" in _assert_envelope(huge, 400, code="context_length_exceeded")["message"]
    assert ok.status_code == 200 and len(engine.prompts) == 1


def test_unknown_model_is_404_naming_the_served_ones():
    app, _ = scripted(FINAL, aliases=("gpt-oss",))
    with ready_client(app) as client:
        r = client.post("/v1/chat/completions", json={"model": "gpt-4o", "messages": USER_HI})
    err = _assert_envelope(r, 404, code="model_not_found", param="model")
    assert "gpt-oss-20b" in err["message"] and "gpt-oss" in err["message"]


def test_api_key_is_required_on_v1_only():
    app, _ = scripted(FINAL, api_key=Secret(KEY))
    with ready_client(app) as client:
        missing = client.post("/v1/chat/completions", json={"messages": USER_HI})
        wrong = client.post("/v1/chat/completions", json={"messages": USER_HI},
                            headers={"Authorization": "Bearer sk-nope"})
        basic = client.get("/v1/models", headers={"Authorization": f"Basic {KEY}"})
        good = client.post("/v1/chat/completions", json={"messages": USER_HI},
                           headers={"Authorization": f"Bearer {KEY}"})
        health = client.get("/health")
    for r in (missing, wrong, basic):
        _assert_envelope(r, 401, code="invalid_api_key")
        assert r.headers["www-authenticate"] == "Bearer"
        assert KEY not in r.text
    assert good.status_code == 200 and health.status_code == 200


def test_body_too_large_is_413():
    app, engine = scripted(FINAL, max_body_bytes=2048)
    big = {"messages": [{"role": "user", "content": "x" * 4000}]}
    with ready_client(app) as client:
        declared = client.post("/v1/chat/completions", json=big)

        def chunks():
            yield b'{"messages": [{"role": "user", "content": "'
            for _ in range(10):
                yield b"y" * 500
            yield b'"}]}'

        chunked = client.post("/v1/chat/completions", content=chunks(), headers={"content-type": "application/json"})
    _assert_envelope(declared, 413, code="request_too_large")
    _assert_envelope(chunked, 413, code="request_too_large")
    assert engine.prompts == []


def test_unknown_route_and_method():
    app, _ = scripted(FINAL)
    with ready_client(app) as client:
        _assert_envelope(client.get("/v1/nothing"), 404)
        _assert_envelope(client.get("/v1/chat/completions"), 405)


@dataclass
class SlowLoadEngine(ScriptedEngine):
    gate: threading.Event = field(default_factory=threading.Event)
    fail: bool = False

    def load(self) -> None:
        self.gate.wait(10)
        if self.fail:
            raise RuntimeError("weights are corrupt")
        self.loaded = True


def test_not_ready_while_loading_then_ready():
    from fastapi.testclient import TestClient

    engine = SlowLoadEngine(script=[FINAL])
    app = create_app(ServeSettings(), engine)
    with TestClient(app) as client:
        assert client.get("/health").status_code == 200
        _assert_envelope(client.get("/ready"), 503, code="model_not_ready")
        r = client.post("/v1/chat/completions", json={"messages": USER_HI})
        _assert_envelope(r, 503, code="model_not_ready")
        assert r.headers["retry-after"]
        engine.gate.set()
        from tests.serve_fixtures import wait_ready

        wait_ready(client)
        assert client.post("/v1/chat/completions", json={"messages": USER_HI}).status_code == 200


def test_failed_load_reports_on_ready_and_callback():
    from fastapi.testclient import TestClient

    engine = SlowLoadEngine(script=[FINAL], fail=True)
    engine.gate.set()
    seen: list[BaseException] = []
    done = threading.Event()
    app = create_app(ServeSettings(), engine, on_load_error=lambda exc: (seen.append(exc), done.set()))
    with TestClient(app) as client:
        assert done.wait(10)
        err = _assert_envelope(client.get("/ready"), 503)
        assert "failed to load" in err["message"]
    assert isinstance(seen[0], RuntimeError)
    assert app.state.server.status.error == "RuntimeError: weights are corrupt"


@dataclass
class BrokenEngine(ScriptedEngine):
    fail_after: int = 0

    async def generate(self, prompt_ids: list[int], params: SamplingParams) -> AsyncIterator[int]:
        produced = 0
        async for tok in super().generate(prompt_ids, params):
            if produced >= self.fail_after:
                raise RuntimeError("CUDA error: device-side assert at /secret/path.py:12")
            produced += 1
            yield tok


def test_engine_failure_before_output_is_500_without_details():
    engine = BrokenEngine(script=[FINAL], fail_after=0)
    app = create_app(ServeSettings(), engine)
    with ready_client(app) as client:
        plain = client.post("/v1/chat/completions", json={"messages": USER_HI})
        stream = client.post("/v1/chat/completions", json={"messages": USER_HI, "stream": True})
    for r in (plain, stream):
        err = _assert_envelope(r, 500, code="engine_error")
        assert "/secret/path.py" not in r.text


def test_engine_failure_mid_stream_sends_an_error_event_then_done():
    engine = BrokenEngine(script=[FINAL], fail_after=12)
    app = create_app(ServeSettings(), engine)
    with ready_client(app) as client:
        r = client.post("/v1/chat/completions", json={"messages": USER_HI, "stream": True})
    assert r.status_code == 200
    events = sse_events(r.text)
    assert events[-1] == "[DONE]"
    assert events[-2]["error"]["code"] == "engine_error" and "choices" not in events[-2]
    assert "/secret/path.py" not in r.text


def test_unexpected_bug_is_a_500_envelope(monkeypatch):
    from gptoss_cli.serve.openai import harmony_front

    def boom(*args, **kwargs):
        raise KeyError("internal")

    monkeypatch.setattr(harmony_front, "chat_completion", boom)
    app, _ = scripted(FINAL)
    with ready_client(app, raise_server_exceptions=False) as client:
        r = client.post("/v1/chat/completions", json={"messages": USER_HI})
    _assert_envelope(r, 500)
