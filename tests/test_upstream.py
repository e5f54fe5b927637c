"""UpstreamBackend against a fake vLLM on 127.0.0.1: normalisation, no buffering, error mapping, secrets."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import httpx
import pytest

from gptoss_cli.config import Secret
from gptoss_cli.errors import UsageError
from gptoss_cli.serve.errors import APIError
from gptoss_cli.serve.engines.interface import ChatBackend
from gptoss_cli.serve.engines.upstream.backend import (
    Observation,
    UpstreamBackend,
    UpstreamConfig,
    safe_url,
    sse_data,
)
from tests.ports import free_port
from tests.upstream_fixtures import UPSTREAM_KEY, FakeUpstream

CHAT = {"model": "gpt-oss-20b", "messages": [{"role": "user", "content": "Capital of France?"}], "max_tokens": 64}


def run(coro: Any, timeout: float = 30) -> Any:
    return asyncio.run(asyncio.wait_for(coro, timeout))


@pytest.fixture(scope="module")
def fake() -> Any:
    server = FakeUpstream(require_key=UPSTREAM_KEY).start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _reset(fake: FakeUpstream) -> None:
    fake.mode = "text"
    fake.delay = 0.0
    fake.gate.clear()
    fake.finished.clear()
    fake.requests.clear()


def backend(url: str, **kw: Any) -> UpstreamBackend:
    observed: list[Observation] = kw.pop("observed", [])
    cfg = UpstreamConfig(url=url, api_key=Secret(UPSTREAM_KEY), **kw)
    return UpstreamBackend(cfg, served_model_name="gpt-oss-20b", observe=observed.append)


async def collect(b: UpstreamBackend, body: dict[str, Any], kind: str = "chat") -> list[dict[str, Any]]:
    try:
        stream = await b.open_stream(kind, body, "gpt-oss-20b")
        return [c async for c in stream]
    finally:
        await b.close()


async def complete(b: UpstreamBackend, body: dict[str, Any], kind: str = "chat") -> dict[str, Any]:
    try:
        return await b.complete(kind, body, "gpt-oss-20b")
    finally:
        await b.close()


async def error_of(coro: Any) -> APIError:
    with pytest.raises(APIError) as info:
        await coro
    return info.value


async def failing(url: str, body: dict[str, Any], **kw: Any) -> APIError:
    b = backend(url, **kw)
    try:
        if body.get("stream"):
            return await error_of(b.open_stream("chat", body, "m"))
        return await error_of(b.complete("chat", body, "m"))
    finally:
        await b.close()


def test_protocol_and_config() -> None:
    b = backend("http://127.0.0.1:9")
    assert isinstance(b, ChatBackend)
    assert UpstreamConfig(url="http://h:1").url == "http://h:1/v1"
    assert UpstreamConfig(url="http://h:1/v1/").url == "http://h:1/v1"
    assert UpstreamConfig(url="https://h/openai/v1").url == "https://h/openai/v1"
    assert safe_url("http://user:pw@h:8/v1?key=abc") == "http://h:8/v1"
    with pytest.raises(UsageError):
        UpstreamConfig(url="ftp://h/v1")
    run(b.close())


def test_non_stream_normalised(fake: FakeUpstream) -> None:
    reply = run(complete(backend(fake.url), CHAT))
    msg = reply["choices"][0]["message"]
    assert reply["object"] == "chat.completion" and reply["model"] == "gpt-oss-20b"
    assert msg["reasoning"] == msg["reasoning_content"] == "User asks capital."
    assert msg["content"] == "Paris."
    assert reply["usage"] == {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}
    sent = fake.requests[0]
    assert sent["headers"]["authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert sent["body"]["stream"] is False and "stream_options" not in sent["body"]


def test_non_stream_tool_call_ids_and_reasoning_content_only(fake: FakeUpstream) -> None:
    fake.mode = "tool"
    reply = run(complete(backend(fake.url), CHAT))
    call = reply["choices"][0]["message"]["tool_calls"][0]
    assert call["id"].startswith("call_") and "chatcmpl" not in call["id"]
    assert call["type"] == "function" and call["function"] == {"name": "get_weather",
                                                               "arguments": "{\"city\": \"Paris\"}"}
    assert reply["choices"][0]["finish_reason"] == "tool_calls"
    fake.mode = "rc"
    msg = run(complete(backend(fake.url), CHAT))["choices"][0]["message"]
    assert msg["reasoning"] == msg["reasoning_content"] == "User asks capital."


def test_usage_always_present_even_when_upstream_omits_it(fake: FakeUpstream) -> None:
    fake.mode = "nousage"
    usage = run(complete(backend(fake.url), CHAT))["usage"]
    assert usage["prompt_tokens"] > 0 and usage["completion_tokens"] > 0
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_stream_vllm_style_normalised(fake: FakeUpstream) -> None:
    body = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
    chunks = run(collect(backend(fake.url), body))
    assert all("choices" in c for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    reasoning = [c["choices"][0]["delta"] for c in chunks if c["choices"] and "reasoning" in c["choices"][0]["delta"]]
    assert reasoning and all(d["reasoning"] == d["reasoning_content"] for d in reasoning)
    assert "".join(d["reasoning"] for d in reasoning) == "User asks capital."
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "Paris."
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] == 20
    assert {c["model"] for c in chunks} == {"gpt-oss-20b"}


def test_stream_usage_only_when_asked_but_always_requested_upstream(fake: FakeUpstream) -> None:
    chunks = run(collect(backend(fake.url), {**CHAT, "stream": True}))
    assert not any("usage" in c for c in chunks)
    assert fake.requests[0]["body"]["stream_options"] == {"include_usage": True}


def test_stream_tool_call_first_delta_shape(fake: FakeUpstream) -> None:
    fake.mode = "tool"
    chunks = run(collect(backend(fake.url), {**CHAT, "stream": True}))
    calls = [tc for c in chunks if c["choices"] for tc in c["choices"][0]["delta"].get("tool_calls", [])]
    first, rest = calls[0], calls[1:]
    assert first["index"] == 0 and first["id"].startswith("call_") and first["type"] == "function"
    assert first["function"]["name"] == "get_weather"
    assert all(set(tc) == {"index", "function"} and set(tc["function"]) == {"arguments"} for tc in rest)
    assert "".join(tc["function"]["arguments"] for tc in calls) == "{\"city\": \"Paris\"}"
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"
    # the same upstream id maps to the same id in streamed and whole replies
    whole = run(complete(backend(fake.url), CHAT))  # mode "tool" again
    assert whole["choices"][0]["message"]["tool_calls"][0]["id"] == first["id"]


def test_stream_ollama_whole_call_gets_index_and_tool_finish(fake: FakeUpstream) -> None:
    fake.mode = "ollama"
    chunks = run(collect(backend(fake.url), {**CHAT, "stream": True}))
    calls = [tc for c in chunks if c["choices"] for tc in c["choices"][0]["delta"].get("tool_calls", [])]
    assert calls == [{"index": 0, "id": "call_ollama1", "type": "function",
                      "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_stream_crlf_event_lines_and_missing_done(fake: FakeUpstream) -> None:
    fake.mode = "crlf"
    chunks = run(collect(backend(fake.url), {**CHAT, "stream": True, "stream_options": {"include_usage": True}}))
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] > 0  # estimated


def test_stream_not_buffered_first_chunk_before_upstream_finishes(fake: FakeUpstream) -> None:
    fake.mode = "gate"

    async def scenario() -> None:
        b = backend(fake.url)
        stream = await b.open_stream("chat", {**CHAT, "stream": True}, "gpt-oss-20b")
        first = await asyncio.wait_for(stream.__anext__(), 5)
        second = await asyncio.wait_for(stream.__anext__(), 5)
        assert first["choices"][0]["delta"]["role"] == "assistant"
        assert second["choices"][0]["delta"]["reasoning"] == "User asks"
        assert not fake.finished.is_set()  # the upstream is still holding the rest back
        fake.gate.set()
        rest = [c async for c in stream]
        assert rest[-1]["choices"][0]["finish_reason"] == "stop"
        await b.close()

    run(scenario())


def test_completions_kind(fake: FakeUpstream) -> None:
    reply = run(complete(backend(fake.url), {"model": "x", "prompt": "Hi"}, kind="completion"))
    assert reply["object"] == "text_completion" and reply["choices"][0]["text"] == "Hello"
    assert reply["model"] == "gpt-oss-20b" and reply["usage"]["total_tokens"] == 3
    chunks = run(collect(backend(fake.url), {"prompt": "Hi", "stream": True}, kind="completion"))
    assert "".join(c["choices"][0]["text"] for c in chunks) == "Hello"
    assert fake.requests[-1]["path"] == "/v1/completions"


@pytest.mark.parametrize(
    "status, expected, code",
    [(400, 400, "context_length_exceeded"), (401, 502, "upstream_auth_failed"), (404, 502, "upstream_not_found"),
     (413, 413, "request_too_large"), (422, 400, None), (429, 429, "overloaded"), (500, 502, "upstream_error"),
     (503, 503, "upstream_unavailable"), (504, 504, "upstream_timeout")],
)
def test_upstream_http_errors_mapped(fake: FakeUpstream, status: int, expected: int, code: str | None) -> None:
    fake.mode = f"status:{status}"
    for body in (CHAT, {**CHAT, "stream": True}):
        exc = run(failing(fake.url, body))
        assert exc.status == expected
        env = exc.envelope()["error"]
        assert set(env) == {"message", "type", "param", "code"}
        if code:
            assert env["code"] == code
        assert UPSTREAM_KEY not in json.dumps(exc.envelope())
        if status in (429, 503):
            assert exc.headers["Retry-After"] == "7"


def test_upstream_down_is_503_with_clear_message() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    exc = run(failing(url, CHAT))
    assert exc.status == 503 and "unreachable" in exc.message and url in exc.message
    exc = run(failing(url, {**CHAT, "stream": True}))
    assert exc.status == 503

    async def probe() -> None:
        b = backend(url)
        assert await b.ready() is False
        await b.start()  # only logs; the front starts anyway and answers 503 until the upstream is there
        await b.close()

    run(probe())


def test_non_json_and_broken_stream(fake: FakeUpstream) -> None:
    fake.mode = "garbage"
    exc = run(failing(fake.url, CHAT))
    assert exc.status == 502 and "not JSON" in exc.message
    fake.mode = "broken"

    async def broken() -> list[dict[str, Any]]:
        b = backend(fake.url)
        got = []
        stream = await b.open_stream("chat", {**CHAT, "stream": True}, "m")
        with pytest.raises(APIError) as info:
            async for c in stream:
                got.append(c)
        assert info.value.status == 502
        await b.close()
        return got

    assert len(run(broken())) >= 1


def test_midstream_error_event_passed_as_envelope(fake: FakeUpstream) -> None:
    fake.mode = "midstream"
    chunks = run(collect(backend(fake.url), {**CHAT, "stream": True}))
    assert chunks[-1] == {"error": {"message": "engine died", "type": "InternalServerError", "param": None,
                                    "code": "upstream_error"}}


def test_read_timeout_is_504(fake: FakeUpstream) -> None:
    fake.delay = 1.0
    exc = run(failing(fake.url, CHAT, read_timeout=0.2))
    assert exc.status == 504


def test_start_discovers_context_length_and_ready(fake: FakeUpstream) -> None:
    async def scenario() -> None:
        b = backend(fake.url)
        await b.start()
        assert b.max_model_len == 8192 and await b.ready()
        await b.close()
        other = FakeUpstream(model="gpt-oss:20b").start()  # Ollama-style name, the only model it serves
        try:
            b = UpstreamBackend(UpstreamConfig(url=other.url), served_model_name="gpt-oss-20b")
            await b.start()
            assert b.upstream_model == "gpt-oss:20b"
            await b.complete("chat", CHAT, "gpt-oss-20b")
            assert other.requests[0]["body"]["model"] == "gpt-oss:20b"
            assert "authorization" not in other.requests[0]["headers"]
            await b.close()
        finally:
            other.stop()

    run(scenario())


def test_request_rewrites(fake: FakeUpstream) -> None:
    body = {**CHAT, "model": "alias", "reasoning": {"effort": "high"}, "stream_options": {"include_usage": True},
            "messages": [{"role": "user", "content": "a"},
                         {"role": "assistant", "content": "<think>\nold\n</think>\nAnswer", "reasoning_content": "r"},
                         {"role": "user", "content": "b"}], "some_vendor_field": 1}
    run(complete(backend(fake.url, model="served-upstream"), body))
    sent = fake.requests[0]["body"]
    assert sent["model"] == "served-upstream" and sent["reasoning_effort"] == "high"
    assert sent["some_vendor_field"] == 1 and "stream_options" not in sent
    assert sent["messages"][1]["content"] == "Answer" and sent["messages"][1]["reasoning"] == "r"


def test_secrets_never_leak(fake: FakeUpstream, caplog: pytest.LogCaptureFixture, capsys: Any) -> None:
    caplog.set_level(logging.DEBUG)
    fake.mode = "status:500"
    exc = run(failing(fake.url, CHAT))
    assert "********" in exc.message and UPSTREAM_KEY not in exc.message
    cfg = UpstreamConfig(url=fake.url, api_key=Secret(UPSTREAM_KEY))
    assert UPSTREAM_KEY not in repr(cfg) + str(cfg)
    out = capsys.readouterr()
    assert UPSTREAM_KEY not in caplog.text + out.out + out.err


def test_observations_recorded(fake: FakeUpstream) -> None:
    seen: list[Observation] = []
    run(complete(backend(fake.url, observed=seen), CHAT))
    run(collect(backend(fake.url, observed=seen), {**CHAT, "stream": True}))
    assert [o.stream for o in seen] == [False, True]
    assert all(o.status == 200 and o.first_byte_s is not None and o.total_s >= o.first_byte_s for o in seen)
    assert seen[1].usage["total_tokens"] == 20


def test_sse_parser_edge_cases() -> None:
    async def lines() -> Any:
        for line in [": comment", "event: x", "data: {\"a\":", "data: 1}", "", "", "data:[DONE]", "", "data: tail"]:
            yield line

    async def go() -> list[str]:
        return [d async for d in sse_data(lines())]

    assert run(go()) == ["{\"a\":\n1}", "[DONE]", "tail"]


def test_mock_transport_injectable() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/v1/chat/completions"
        return httpx.Response(200, json={"choices": [{"message": {"content": "ok"}}]})

    b = UpstreamBackend(UpstreamConfig(url="http://up.test/v1"), transport=httpx.MockTransport(handler))
    reply = run(complete(b, CHAT))
    assert reply["choices"][0]["message"] == {"role": "assistant", "content": "ok"}
    assert reply["choices"][0]["finish_reason"] == "stop" and reply["usage"]["total_tokens"] > 0
