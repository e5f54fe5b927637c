"""A real uvicorn server on 127.0.0.1 called by the real ``openai`` SDK (and raw httpx for disconnects)."""

from __future__ import annotations

import json
import time

import httpx
import openai
import pytest

from gptoss_cli.config import Secret
from tests.serve_fixtures import FINAL, TOOL_CALL, WEATHER_TOOL, live_server, scripted

KEY = "sk-live-test-0123456789"


@pytest.fixture(scope="module")
def server():
    """One live server for the module; its scripted engine answers FINAL, TOOL_CALL, FINAL, ... in turn."""
    app, engine = scripted(FINAL, api_key=Secret(KEY), aliases=("gpt-oss",))
    with live_server(app) as base:
        yield base, engine


def _client(base: str, key: str = KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=base + "/v1", api_key=key, max_retries=0, timeout=10.0)


def _use(engine, *script):
    engine.script[:] = list(script)
    engine.prompts.clear()
    engine.params.clear()


def test_chat_non_streaming(server):
    base, engine = server
    _use(engine, FINAL)
    resp = _client(base).chat.completions.create(model="gpt-oss-20b", messages=[{"role": "user", "content": "Hi"}])
    assert resp.object == "chat.completion"
    msg = resp.choices[0].message
    assert msg.content == "Hello there!"
    assert msg.model_extra["reasoning_content"] == msg.model_extra["reasoning"] == "User greets. Answer."
    assert resp.usage.total_tokens == resp.usage.prompt_tokens + resp.usage.completion_tokens


def test_chat_streaming_with_usage(server):
    base, engine = server
    _use(engine, FINAL)
    stream = _client(base).chat.completions.create(
        model="gpt-oss", messages=[{"role": "user", "content": "Hi"}], stream=True,
        stream_options={"include_usage": True})
    content, reasoning, finish, usage = [], [], None, None
    for chunk in stream:
        if chunk.usage:
            usage = chunk.usage
        for choice in chunk.choices:
            content.append(choice.delta.content or "")
            reasoning.append((choice.delta.model_extra or {}).get("reasoning") or "")
            finish = choice.finish_reason or finish
    assert "".join(content) == "Hello there!"
    assert "".join(reasoning) == "User greets. Answer."
    assert finish == "stop" and usage.completion_tokens > 0


def test_tool_round_trip(server):
    base, engine = server
    _use(engine, TOOL_CALL, FINAL)
    client = _client(base)
    messages = [{"role": "user", "content": "Weather in Paris?"}]
    first = client.chat.completions.create(model="gpt-oss-20b", messages=messages, tools=[WEATHER_TOOL])
    assert first.choices[0].finish_reason == "tool_calls"
    call = first.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Paris"}
    messages.append(first.choices[0].message.model_dump(exclude_none=True))
    messages.append({"role": "tool", "tool_call_id": call.id, "content": json.dumps({"temp": 21})})
    second = client.chat.completions.create(model="gpt-oss-20b", messages=messages, tools=[WEATHER_TOOL])
    assert second.choices[0].message.content == "Hello there!"
    prompt = engine.tokenizer.decode(engine.prompts[1])
    assert "functions.get_weather to=assistant" in prompt and '{"city":"Paris"}<|call|>' in prompt


def test_streamed_tool_call_reassembles(server):
    base, engine = server
    _use(engine, TOOL_CALL)
    stream = _client(base).chat.completions.create(
        model="gpt-oss-20b", messages=[{"role": "user", "content": "Weather?"}], tools=[WEATHER_TOOL], stream=True)
    calls: dict[int, dict] = {}
    for chunk in stream:
        for tc in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            entry = calls.setdefault(tc.index, {"id": tc.id, "name": tc.function.name, "args": ""})
            entry["args"] += tc.function.arguments or ""
    assert calls[0]["id"].startswith("call_") and calls[0]["name"] == "get_weather"
    assert json.loads(calls[0]["args"]) == {"city": "Paris"}


def test_completions_and_models(server):
    base, engine = server
    _use(engine, FINAL)
    client = _client(base)
    done = client.completions.create(model="gpt-oss-20b", prompt="ping")
    assert done.object == "text_completion" and done.choices[0].text == "Hello there!"
    models = client.models.list()
    ids = [m.id for m in models.data]
    assert ids == ["gpt-oss-20b", "gpt-oss"]
    assert models.data[0].model_extra["context_length"] == 4096


def test_error_status_mapping(server):
    base, engine = server
    _use(engine, FINAL)
    msgs = [{"role": "user", "content": "Hi"}]
    with pytest.raises(openai.AuthenticationError):
        _client(base, key="sk-wrong").chat.completions.create(model="gpt-oss-20b", messages=msgs)
    with pytest.raises(openai.NotFoundError) as nf:
        _client(base).chat.completions.create(model="gpt-4o", messages=msgs)
    assert nf.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as bad:
        _client(base).chat.completions.create(model="gpt-oss-20b", messages=msgs, n=2)
    assert bad.value.param == "n"
    assert engine.prompts == []


def test_client_disconnect_cancels_generation():
    app, engine = scripted("<|channel|>final<|message|>" + "x" * 2000)
    engine.delay = 0.01
    with live_server(app) as base:
        with httpx.Client(timeout=10.0) as http:
            with http.stream("POST", base + "/v1/chat/completions",
                             json={"messages": [{"role": "user", "content": "Hi"}], "stream": True}) as r:
                lines = r.iter_lines()
                for _ in range(3):
                    next(lines)
        deadline = time.monotonic() + 10
        while engine.cancelled == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
    assert engine.cancelled == 1
