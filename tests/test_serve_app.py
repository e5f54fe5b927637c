"""The HTTP layer over a scripted engine: chat (stream / non-stream), completions, models, health, OpenAPI."""

from __future__ import annotations

import pytest

from gptoss_cli.serve.openai.protocol import ChatCompletion, ChatCompletionChunk, Completion
from tests.serve_fixtures import FINAL, USER_HI, ready_client, scripted, sse_events

RETURN, CALL, ENDOFTEXT = 200002, 200012, 199999


def test_dify_validation_request_returns_200_even_inside_analysis():
    app, engine = scripted(FINAL)
    with ready_client(app) as client:
        r = client.post("/v1/chat/completions", json={"model": "gpt-oss-20b", "max_tokens": 5,
                                                      "messages": [{"role": "user", "content": "ping"}]})
    assert r.status_code == 200
    body = r.json()
    assert body["object"] == "chat.completion"
    choice = body["choices"][0]
    assert choice["finish_reason"] == "length"
    assert choice["message"]["content"] == ""
    assert body["usage"]["completion_tokens"] == 5
    assert engine.params[0].max_tokens == 5


def test_non_streaming_splits_reasoning_and_content():
    app, engine = scripted(FINAL)
    with ready_client(app) as client:
        r = client.post("/v1/chat/completions", json={"messages": USER_HI})
    body = ChatCompletion.model_validate(r.json()).model_dump()
    msg = body["choices"][0]["message"]
    assert msg["content"] == "Hello there!"
    assert msg["reasoning_content"] == msg["reasoning"] == "User greets. Answer."
    assert msg["tool_calls"] is None
    assert body["choices"][0]["finish_reason"] == "stop"
    usage = body["usage"]
    assert usage["prompt_tokens"] == len(engine.prompts[0])
    assert usage["completion_tokens"] == len(engine.tokenizer.encode(FINAL))
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert engine.cancelled == 0  # a generation that ended on its stop token is not reported as cancelled
    prompt = engine.tokenizer.decode(engine.prompts[0])
    assert prompt.startswith("<|start|>system<|message|>") and prompt.endswith("<|start|>assistant")
    assert "Current date: 2025-06-01" in prompt and "Reasoning: medium" in prompt


def test_streaming_shape_matches_the_contract():
    app, _ = scripted(FINAL)
    with ready_client(app) as client:
        r = client.post("/v1/chat/completions", json={"messages": USER_HI, "stream": True,
                                                      "stream_options": {"include_usage": True}})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    events = sse_events(r.text)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    for c in chunks:
        assert "choices" in c
        ChatCompletionChunk.model_validate(c)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert len({c["id"] for c in chunks}) == 1
    reasoning = [c["choices"][0]["delta"] for c in chunks if c["choices"] and "reasoning" in c["choices"][0]["delta"]]
    assert reasoning and all(d["reasoning"] == d["reasoning_content"] for d in reasoning)
    assert "".join(d["reasoning"] for d in reasoning) == "User greets. Answer."
    content = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert content == "Hello there!"
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] > 0


def test_streaming_without_include_usage_has_no_usage_chunk():
    app, _ = scripted(FINAL)
    with ready_client(app) as client:
        events = sse_events(client.post("/v1/chat/completions", json={"messages": USER_HI, "stream": True}).text)
    assert all(e == "[DONE]" or e["choices"] for e in events)
    assert events[-2]["choices"][0]["finish_reason"] == "stop"


def test_streaming_length_finish_inside_analysis():
    app, _ = scripted(FINAL)
    with ready_client(app) as client:
        r = client.post("/v1/chat/completions", json={"messages": USER_HI, "stream": True, "max_tokens": 10})
    events = sse_events(r.text)
    assert events[-2]["choices"][0]["finish_reason"] == "length"


def test_sampling_parameters_reach_the_engine():
    app, engine = scripted(FINAL)
    with ready_client(app) as client:
        r = client.post("/v1/chat/completions", json={
            "messages": USER_HI, "temperature": 0, "top_p": 0.5, "seed": 7, "presence_penalty": 0.5,
            "frequency_penalty": -0.25, "max_completion_tokens": 77, "user": "someone",
        })
    assert r.status_code == 200
    p = engine.params[0]
    assert (p.temperature, p.top_p, p.seed, p.max_tokens) == (0.0, 0.5, 7, 77)
    assert (p.presence_penalty, p.frequency_penalty) == (0.5, -0.25)
    assert set(p.stop_token_ids) == {RETURN, CALL, ENDOFTEXT}  # <|endoftext|> ends a turn too (issue 12)
    assert p.greedy


def test_default_max_tokens_is_the_rest_of_the_context():
    app, engine = scripted(FINAL, max_model_len=1000)
    with ready_client(app) as client:
        client.post("/v1/chat/completions", json={"messages": USER_HI})
    assert engine.params[0].max_tokens == 1000 - len(engine.prompts[0])


@pytest.mark.parametrize(
    "field, expected",
    [({"reasoning_effort": "high"}, "Reasoning: high"), ({"reasoning": {"effort": "low"}}, "Reasoning: low"),
     ({"reasoning_effort": "minimal"}, "Reasoning: low"), ({}, "Reasoning: medium")],
)
def test_reasoning_effort(field, expected):
    app, engine = scripted(FINAL)
    with ready_client(app) as client:
        assert client.post("/v1/chat/completions", json={"messages": USER_HI, **field}).status_code == 200
    assert expected in engine.tokenizer.decode(engine.prompts[0])


def test_history_system_developer_parts_and_think_blocks():
    app, engine = scripted(FINAL)
    messages = [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": [{"type": "text", "text": "2+2?"}, {"type": "text", "text": "Quick."}]},
        {"role": "assistant", "content": "<think>\nsecret chain\n</think>4"},
        {"role": "user", "content": "and 3+3?"},
    ]
    with ready_client(app) as client:
        assert client.post("/v1/chat/completions", json={"messages": messages}).status_code == 200
    prompt = engine.tokenizer.decode(engine.prompts[0])
    assert "# Instructions\n\nAnswer briefly." in prompt
    assert "2+2?\nQuick." in prompt
    assert "<|channel|>final<|message|>4<|end|>" in prompt
    assert "secret chain" not in prompt and "<think>" not in prompt


def test_unknown_fields_are_ignored():
    app, _ = scripted(FINAL)
    with ready_client(app) as client:
        r = client.post("/v1/chat/completions", json={"messages": USER_HI, "store": True, "metadata": {"a": 1},
                                                      "parallel_tool_calls": False, "service_tier": "auto",
                                                      "chat_template_kwargs": {}, "n": 1, "stream": None})
    assert r.status_code == 200


def test_completions_endpoint_wraps_the_prompt_as_a_user_message():
    app, engine = scripted(FINAL)
    with ready_client(app) as client:
        r = client.post("/v1/completions", json={"prompt": "ping"})
        validation = client.post("/v1/completions", json={"prompt": "ping", "max_tokens": 5})
        echo = client.post("/v1/completions", json={"prompt": ["Say hi"], "echo": True})
    body = Completion.model_validate(r.json()).model_dump()
    assert body["object"] == "text_completion"
    assert body["choices"][0]["text"] == "Hello there!"
    assert body["choices"][0]["reasoning_content"] == "User greets. Answer."
    assert body["usage"]["prompt_tokens"] == len(engine.prompts[0])
    assert "<|start|>user<|message|>ping<|end|><|start|>assistant" in engine.tokenizer.decode(engine.prompts[0])
    assert validation.status_code == 200 and validation.json()["choices"][0]["finish_reason"] == "length"
    assert echo.json()["choices"][0]["text"] == "Say hiHello there!"


def test_completions_streaming():
    app, _ = scripted(FINAL)
    with ready_client(app) as client:
        r = client.post("/v1/completions", json={"prompt": "ping", "stream": True,
                                                 "stream_options": {"include_usage": True}})
    events = sse_events(r.text)[:-1]
    assert all("choices" in e and e["object"] == "text_completion" for e in events)
    assert "".join(e["choices"][0]["text"] for e in events if e["choices"]) == "Hello there!"
    assert "".join(e["choices"][0].get("reasoning", "") for e in events if e["choices"]) == "User greets. Answer."
    assert events[-2]["choices"][0]["finish_reason"] == "stop"
    assert events[-1]["choices"] == [] and events[-1]["usage"]["total_tokens"] > 0


def test_models_list_and_retrieve():
    app, _ = scripted(FINAL, served_model_name="gpt-oss-20b", aliases=("gpt-oss", "local"), max_model_len=2048)
    with ready_client(app) as client:
        listing = client.get("/v1/models").json()
        one = client.get("/v1/models/gpt-oss")
        missing = client.get("/v1/models/nope")
        aliased = client.post("/v1/chat/completions", json={"model": "local", "messages": USER_HI})
    assert listing["object"] == "list"
    assert [m["id"] for m in listing["data"]] == ["gpt-oss-20b", "gpt-oss", "local"]
    first = listing["data"][0]
    assert first["object"] == "model" and first["owned_by"] and isinstance(first["created"], int)
    assert first["max_model_len"] == first["context_length"] == 2048
    assert one.status_code == 200 and one.json()["id"] == "gpt-oss"
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "model_not_found"
    assert aliased.json()["model"] == "local"


def test_health_ready_and_openapi():
    app, _ = scripted(FINAL)
    with ready_client(app) as client:
        assert client.get("/health").json() == {"status": "ok"}
        ready = client.get("/ready").json()
        spec = client.get("/openapi.json").json()
    assert ready["status"] == "ready" and ready["max_model_len"] == 4096
    for path in ("/v1/chat/completions", "/v1/completions", "/v1/models", "/health", "/ready"):
        assert path in spec["paths"]
    assert "ChatCompletionRequest" in spec["components"]["schemas"]
