"""The server's ``/no-reasoning/v1`` mount (gptoss_cli/serve/openai/no_reasoning.py), which ``--hide-reasoning`` registers
for Dify versions without a switch: the ``/v1`` API, same key and limits, with no reasoning in any reply."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from gptoss_cli.config import Secret
from gptoss_cli.serve.openai.no_reasoning import NoReasoningMiddleware, drop_reasoning, filter_sse
from tests.serve_fixtures import FINAL, ready_client, scripted, sse_events

KEY = "sk-no-reasoning-key-5"
CHAT = {"model": "gpt-oss-20b", "messages": [{"role": "user", "content": "Hi"}]}


def _chunk(delta: dict[str, Any], finish: str | None = None, usage: Any = None) -> bytes:
    doc: dict[str, Any] = {"object": "chat.completion.chunk",
                           "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    if usage is not None:
        doc = {"object": "chat.completion.chunk", "choices": [], "usage": usage}
    return b"data: " + json.dumps(doc).encode()


def test_stream_chunks_lose_reasoning_and_empty_ones_are_not_sent() -> None:
    assert filter_sse(_chunk({"reasoning_content": "r", "reasoning": "r"})) is None
    kept = filter_sse(_chunk({"role": "assistant", "content": ""}))
    assert kept is not None and json.loads(kept[6:])["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    both = json.loads(filter_sse(_chunk({"reasoning": "r", "content": "A"}))[6:])  # type: ignore[index]
    assert both["choices"][0]["delta"] == {"content": "A"}
    assert filter_sse(_chunk({}, finish="stop")) is not None
    assert filter_sse(_chunk({}, usage={"prompt_tokens": 1})) is not None
    for other in (b"data: [DONE]", b'data: {"error": {"message": "x"}}', b": comment"):
        assert filter_sse(other) == other


def test_replies_lose_reasoning_and_keep_everything_else() -> None:
    reply = {"object": "chat.completion", "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
        "role": "assistant", "content": None, "reasoning_content": "r", "reasoning": "r",
        "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}}
    doc, _ = drop_reasoning(json.loads(json.dumps(reply)))
    message = doc["choices"][0]["message"]
    assert "reasoning" not in message and "reasoning_content" not in message
    assert message["tool_calls"] == reply["choices"][0]["message"]["tool_calls"] and doc["usage"] == reply["usage"]
    text, _ = drop_reasoning({"choices": [{"text": "A", "reasoning_content": "r", "finish_reason": "stop"}]})
    assert text == {"choices": [{"text": "A", "finish_reason": "stop"}]}


def test_events_split_across_body_messages_are_reassembled() -> None:
    body = b"\n\n".join([_chunk({"role": "assistant", "content": ""}), _chunk({"reasoning": "r"}),
                         _chunk({"content": "Hi"}), _chunk({}, finish="stop"), b"data: [DONE]"]) + b"\n\n"
    sent: list[dict[str, Any]] = []

    async def inner(scope: dict, receive: Any, send: Any) -> None:
        assert scope["path"] == "/v1/chat/completions" and scope["raw_path"] == b"/v1/chat/completions"
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/event-stream; charset=utf-8")]})
        for i in range(0, len(body), 7):  # cut anywhere, even inside an event
            await send({"type": "http.response.body", "body": body[i:i + 7], "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def collect(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "path": "/no-reasoning/v1/chat/completions",
             "raw_path": b"/no-reasoning/v1/chat/completions"}
    asyncio.run(NoReasoningMiddleware(inner)(scope, None, collect))  # type: ignore[arg-type]
    text = b"".join(m.get("body", b"") for m in sent[1:]).decode()
    events = sse_events(text)
    assert [e["choices"][0]["delta"] if isinstance(e, dict) else e for e in events] == [
        {"role": "assistant", "content": ""}, {"content": "Hi"}, {}, "[DONE]"]


def test_the_mount_keeps_the_api_key_and_drops_reasoning_end_to_end() -> None:
    app, _ = scripted(FINAL, api_key=Secret(KEY))
    auth = {"Authorization": f"Bearer {KEY}"}
    with ready_client(app) as client:
        assert client.post("/no-reasoning/v1/chat/completions", json=CHAT).status_code == 401
        plain = client.post("/v1/chat/completions", json=CHAT, headers=auth).json()
        assert plain["choices"][0]["message"]["reasoning_content"]
        hidden = client.post("/no-reasoning/v1/chat/completions", json=CHAT, headers=auth)
        assert hidden.status_code == 200 and int(hidden.headers["content-length"]) == len(hidden.content)
        message = hidden.json()["choices"][0]["message"]
        assert message["content"] == "Hello there!" and "reasoning_content" not in message
        assert "reasoning" not in message and hidden.json()["usage"]["completion_tokens"] > 0
        streamed = client.post("/no-reasoning/v1/chat/completions", json={**CHAT, "stream": True}, headers=auth)
        events = sse_events(streamed.text)
        assert "reasoning" not in streamed.text
        assert "".join(e["choices"][0]["delta"].get("content") or "" for e in events[:-1] if e["choices"]) == (
            "Hello there!")
        models = client.get("/no-reasoning/v1/models", headers=auth).json()
        assert models["data"][0]["id"] == "gpt-oss-20b"
        assert client.get("/no-reasoning/v1/nothing", headers=auth).status_code == 404
