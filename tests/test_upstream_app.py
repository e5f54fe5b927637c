"""The gptoss front over a fake vLLM (``--engine upstream``): real uvicorn on both sides, the real openai SDK.

Checks that what the front adds stays: normalised replies (both reasoning names, ``call_…`` ids, usage), streams
relayed without buffering, upstream errors in the OpenAI envelope, 503 when the upstream is down, the front's own API
key (never forwarded), 429 backpressure, metrics with upstream latency, the access log and the response cache.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any, Iterator

import httpx
import pytest

from gptoss_cli.config import Secret
from gptoss_cli.serve.openai.app import create_app
from gptoss_cli.serve.settings import ServeSettings
from gptoss_cli.serve.engines.upstream.backend import UpstreamBackend, UpstreamConfig
from tests.serve_fixtures import WEATHER_TOOL, live_server, sse_events
from tests.ports import free_port
from tests.upstream_fixtures import UPSTREAM_KEY, FakeUpstream

FRONT_KEY = "front-key-7d1c0b"
AUTH = {"Authorization": f"Bearer {FRONT_KEY}"}
ASK = {"model": "gpt-oss-20b", "messages": [{"role": "user", "content": "Capital of France?"}], "max_tokens": 64}


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeUpstream]:
    server = FakeUpstream(require_key=UPSTREAM_KEY).start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _reset(fake: FakeUpstream) -> None:
    fake.mode, fake.delay = "text", 0.0
    fake.gate.clear()
    fake.finished.clear()
    fake.requests.clear()


def front(url: str, *, log: list[str] | None = None, **settings: Any) -> Any:
    from gptoss_cli.serve.generation.metrics import ServeMetrics

    metrics = ServeMetrics()  # the backend reports its exchanges to the app's metrics (EngineHooks.observe)
    backend = UpstreamBackend(UpstreamConfig(url=url, api_key=Secret(UPSTREAM_KEY)), served_model_name="gpt-oss-20b",
                              observe=metrics.upstream_exchange)
    settings.setdefault("api_key", Secret(FRONT_KEY))
    return create_app(ServeSettings(engine="upstream", **settings), backend, metrics=metrics,
                      emit_access_log=(log.append if log is not None else lambda line: None))


@pytest.fixture(scope="module")
def base(fake: FakeUpstream) -> Iterator[str]:
    with live_server(front(fake.url, aliases=("gpt-oss",))) as url:
        yield url


def sdk(base: str) -> Any:
    from openai import OpenAI

    return OpenAI(base_url=base + "/v1", api_key=FRONT_KEY, max_retries=0, timeout=30)


def test_non_stream_through_sdk(base: str, fake: FakeUpstream) -> None:
    reply = sdk(base).chat.completions.create(**ASK)
    msg = reply.choices[0].message
    assert msg.content == "Paris."
    assert msg.model_extra["reasoning_content"] == msg.model_extra["reasoning"] == "User asks capital."
    assert reply.usage.total_tokens == 18 and reply.model == "gpt-oss-20b"
    sent = fake.requests[0]
    assert sent["headers"]["authorization"] == f"Bearer {UPSTREAM_KEY}"  # ours, never the client's
    assert FRONT_KEY not in json.dumps(sent)


def test_dify_validation_request(base: str) -> None:
    r = httpx.post(base + "/v1/chat/completions", headers=AUTH, timeout=10,
                   json={"model": "gpt-oss-20b", "max_tokens": 5, "messages": [{"role": "user", "content": "ping"}]})
    assert r.status_code == 200 and r.json()["object"] == "chat.completion" and r.json()["usage"]


def test_stream_sse_shape_and_tool_calls(base: str, fake: FakeUpstream) -> None:
    fake.mode = "tool"
    body = {**ASK, "stream": True, "stream_options": {"include_usage": True}, "tools": [WEATHER_TOOL]}
    r = httpx.post(base + "/v1/chat/completions", headers=AUTH, json=body, timeout=10)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = sse_events(r.text)
    chunks = events[:-1]
    assert events[-1] == "[DONE]" and all("choices" in c for c in chunks)
    calls = [tc for c in chunks if c["choices"] for tc in c["choices"][0]["delta"].get("tool_calls", [])]
    assert calls[0]["id"].startswith("call_") and calls[0]["function"]["name"] == "get_weather"
    assert calls[0]["index"] == 0 and calls[0]["type"] == "function"
    assert all("id" not in tc for tc in calls[1:])
    reasoning = [c["choices"][0]["delta"] for c in chunks if c["choices"] and "reasoning" in c["choices"][0]["delta"]]
    assert reasoning and all(d["reasoning_content"] == d["reasoning"] for d in reasoning)
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] == 20


def test_stream_through_sdk_alias(base: str) -> None:
    stream = sdk(base).chat.completions.create(**{**ASK, "model": "gpt-oss"}, stream=True)
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == "Paris."


def test_stream_not_buffered_by_the_front(base: str, fake: FakeUpstream) -> None:
    fake.mode = "gate"
    with httpx.stream("POST", base + "/v1/chat/completions", headers=AUTH, json={**ASK, "stream": True},
                      timeout=10) as r:
        assert r.status_code == 200
        lines = r.iter_lines()
        first = next(line for line in lines if line)
        second = next(line for line in lines if line)
        assert json.loads(first[6:])["choices"][0]["delta"]["role"] == "assistant"
        assert json.loads(second[6:])["choices"][0]["delta"]["reasoning"] == "User asks"
        assert not fake.finished.is_set()  # the upstream has not finished: nothing was held back
        fake.gate.set()
        rest = [line for line in lines if line]
    assert rest[-1] == "data: [DONE]"


@pytest.mark.parametrize("status, expected", [(400, 400), (401, 502), (429, 429), (500, 502), (503, 503)])
def test_upstream_errors_in_envelope(base: str, fake: FakeUpstream, status: int, expected: int) -> None:
    fake.mode = f"status:{status}"
    for body in (ASK, {**ASK, "stream": True}):
        r = httpx.post(base + "/v1/chat/completions", headers=AUTH, json=body, timeout=10)
        assert r.status_code == expected
        assert set(r.json()["error"]) == {"message", "type", "param", "code"}
        assert UPSTREAM_KEY not in r.text
        if expected in (429, 503):
            assert r.headers["retry-after"] == "7"


def test_front_auth_and_model_checks(base: str, fake: FakeUpstream) -> None:
    r = httpx.post(base + "/v1/chat/completions", json=ASK, timeout=10)
    assert r.status_code == 401
    r = httpx.post(base + "/v1/chat/completions", headers=AUTH, json={**ASK, "model": "nope"}, timeout=10)
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"
    r = httpx.post(base + "/v1/chat/completions", headers=AUTH, json={"model": "gpt-oss-20b"}, timeout=10)
    assert r.status_code == 400
    assert fake.requests == []


def test_models_ready_and_metrics(base: str) -> None:
    models = httpx.get(base + "/v1/models", headers=AUTH, timeout=10).json()["data"]
    assert {m["id"] for m in models} == {"gpt-oss-20b", "gpt-oss"}
    assert all(m["max_model_len"] == 8192 for m in models)  # learnt from the upstream's /v1/models
    assert httpx.get(base + "/ready", timeout=10).status_code == 200
    httpx.post(base + "/v1/chat/completions", headers=AUTH, json=ASK, timeout=10)
    text = httpx.get(base + "/metrics", timeout=10).text
    assert "gptoss_upstream_duration_seconds_bucket" in text and "gptoss_upstream_first_byte_seconds" in text
    assert 'status="200"' in text


def test_completions_endpoint(base: str) -> None:
    r = httpx.post(base + "/v1/completions", headers=AUTH, json={"model": "gpt-oss-20b", "prompt": "Hi"}, timeout=10)
    assert r.status_code == 200 and r.json()["choices"][0]["text"] == "Hello"


def test_upstream_down_is_503(tmp_path: Any) -> None:
    app = front(f"http://127.0.0.1:{free_port()}/v1")
    from fastapi.testclient import TestClient

    with TestClient(app) as client:
        for _ in range(100):
            if app.state.server.status.ready:
                break
            time.sleep(0.02)
        r = client.post("/v1/chat/completions", headers=AUTH, json=ASK)
        assert r.status_code == 503 and "unreachable" in r.json()["error"]["message"]
        r = client.post("/v1/chat/completions", headers=AUTH, json={**ASK, "stream": True})
        assert r.status_code == 503
        assert client.get("/ready").status_code == 503


def test_backpressure_access_log_and_cache(fake: FakeUpstream) -> None:
    log: list[str] = []
    app = front(fake.url, log=log, max_concurrency=1, max_queue=0)
    with live_server(app) as url:
        fake.mode = "gate"
        holder: dict[str, Any] = {}

        def hold() -> None:
            with httpx.stream("POST", url + "/v1/chat/completions", headers=AUTH, json={**ASK, "stream": True},
                              timeout=20) as r:
                holder["lines"] = [line for line in r.iter_lines() if line]

        t = threading.Thread(target=hold)
        t.start()
        for _ in range(200):
            if fake.requests:
                break
            time.sleep(0.02)
        busy = httpx.post(url + "/v1/chat/completions", headers=AUTH, json=ASK, timeout=10)
        assert busy.status_code == 429 and busy.headers.get("retry-after")
        fake.gate.set()
        t.join(20)
        assert holder["lines"][-1] == "data: [DONE]"
        fake.mode = "text"
        deterministic = {**ASK, "temperature": 0}
        before = len(fake.requests)
        a = httpx.post(url + "/v1/chat/completions", headers=AUTH, json=deterministic, timeout=10).json()
        b = httpx.post(url + "/v1/chat/completions", headers=AUTH, json=deterministic, timeout=10).json()
        assert a == b and len(fake.requests) == before + 1  # the second came from the cache
    lines = "\n".join(log)
    assert "route=/v1/chat/completions status=429" in lines and "cache=hit" in lines
    assert "Capital of France" not in lines and FRONT_KEY not in lines and UPSTREAM_KEY not in lines
