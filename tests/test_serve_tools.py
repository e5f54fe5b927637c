"""Tool calls, tool_choice, response_format, stop strings and malformed model output through the HTTP layer."""

from __future__ import annotations

import json

import pytest

from gptoss_cli.serve.engines.scripted import ByteTokenizer
from tests.serve_fixtures import FINAL, TOOL_CALL, USER_HI, WEATHER_TOOL, ready_client, scripted, sse_events

ASK_WEATHER = [{"role": "user", "content": "Weather in Paris?"}]


def _decode_prompt(engine, i=0):
    return engine.tokenizer.decode(engine.prompts[i])


def test_tool_call_non_streaming():
    app, engine = scripted(TOOL_CALL)
    with ready_client(app) as client:
        r = client.post("/v1/chat/completions", json={"messages": ASK_WEATHER, "tools": [WEATHER_TOOL],
                                                      "tool_choice": "auto"})
    choice = r.json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    msg = choice["message"]
    assert msg["content"] is None
    assert msg["reasoning"] == "Need weather; call tool."
    (call,) = msg["tool_calls"]
    assert call["id"].startswith("call_") and call["type"] == "function"
    assert call["function"] == {"name": "get_weather", "arguments": '{"city":"Paris"}'}
    prompt = _decode_prompt(engine)
    assert "type get_weather = (_: {" in prompt and "namespace functions" in prompt


def test_tool_call_streaming_first_delta_carries_id_and_name():
    app, _ = scripted(TOOL_CALL)
    with ready_client(app) as client:
        r = client.post("/v1/chat/completions", json={"messages": ASK_WEATHER, "tools": [WEATHER_TOOL],
                                                      "stream": True})
    chunks = [e for e in sse_events(r.text) if e != "[DONE]"]
    tool_deltas = [c["choices"][0]["delta"]["tool_calls"][0] for c in chunks
                   if c["choices"] and "tool_calls" in c["choices"][0]["delta"]]
    first, rest = tool_deltas[0], tool_deltas[1:]
    assert first["index"] == 0 and first["id"].startswith("call_") and first["type"] == "function"
    assert first["function"] == {"name": "get_weather", "arguments": ""}
    assert rest and all(set(d) == {"index", "function"} and set(d["function"]) == {"arguments"} for d in rest)
    assert "".join(d["function"]["arguments"] for d in rest) == '{"city":"Paris"}'
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"
    assert not any(c["choices"][0]["delta"].get("content") for c in chunks)


def test_tool_round_trip_renders_call_and_result():
    app, engine = scripted(FINAL)
    messages = ASK_WEATHER + [
        {"role": "assistant", "content": None, "reasoning_content": "Need weather; call tool.",
         "tool_calls": [{"id": "call_1", "type": "function",
                         "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": '{"temp":21}'},
    ]
    with ready_client(app) as client:
        r = client.post("/v1/chat/completions", json={"messages": messages, "tools": [WEATHER_TOOL]})
    assert r.json()["choices"][0]["message"]["content"] == "Hello there!"
    prompt = _decode_prompt(engine)
    call = 'to=functions.get_weather<|channel|>commentary <|constrain|>json<|message|>{"city":"Paris"}<|call|>'
    assert call in prompt
    assert '<|start|>functions.get_weather to=assistant<|channel|>commentary<|message|>{"temp":21}<|end|>' in prompt
    assert "Need weather; call tool." in prompt


def test_tool_choice_none_hides_the_tools():
    app, engine = scripted(FINAL)
    with ready_client(app) as client:
        client.post("/v1/chat/completions", json={"messages": ASK_WEATHER, "tools": [WEATHER_TOOL],
                                                  "tool_choice": "none"})
    assert "get_weather" not in _decode_prompt(engine)


def test_tool_choice_required_forces_a_call_header():
    tail = '.get_weather <|constrain|>json<|message|>{"city":"Paris"}<|call|>'
    app, engine = scripted(tail)
    with ready_client(app) as client:
        r = client.post("/v1/chat/completions", json={"messages": ASK_WEATHER, "tools": [WEATHER_TOOL],
                                                      "tool_choice": "required"})
    assert _decode_prompt(engine).endswith("<|start|>assistant<|channel|>commentary to=functions")
    choice = r.json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["tool_calls"][0]["function"]["name"] == "get_weather"
    assert r.json()["usage"]["completion_tokens"] == len(ByteTokenizer().encode(tail))


@pytest.mark.parametrize("stream", [False, True])
def test_tool_choice_named_forces_that_function(stream):
    app, engine = scripted('{"city":"Oslo"}<|call|>')
    choice = {"type": "function", "function": {"name": "get_weather"}}
    with ready_client(app) as client:
        r = client.post("/v1/chat/completions", json={"messages": ASK_WEATHER, "tools": [WEATHER_TOOL],
                                                      "tool_choice": choice, "stream": stream})
    assert _decode_prompt(engine).endswith(
        "<|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>")
    if stream:
        chunks = [e for e in sse_events(r.text) if e != "[DONE]"]
        first = next(c["choices"][0]["delta"]["tool_calls"][0] for c in chunks
                     if "tool_calls" in c["choices"][0]["delta"])
        assert first["function"]["name"] == "get_weather" and first["id"].startswith("call_")
        assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"
    else:
        call = r.json()["choices"][0]["message"]["tool_calls"][0]
        assert call["function"] == {"name": "get_weather", "arguments": '{"city":"Oslo"}'}


def test_legacy_functions_are_read_as_tools():
    app, engine = scripted(TOOL_CALL)
    with ready_client(app) as client:
        r = client.post("/v1/chat/completions", json={"messages": ASK_WEATHER,
                                                      "functions": [WEATHER_TOOL["function"]]})
    assert r.json()["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == "get_weather"
    assert "type get_weather" in _decode_prompt(engine)


def _final(text: str) -> str:
    head = "<|channel|>analysis<|message|>Format it.<|end|><|start|>assistant<|channel|>final<|message|>"
    return f"{head}{text}<|return|>"


def test_json_object_validate_and_retry():
    app, engine = scripted(_final("Sure! here it is"), _final('```json\n{"a": 1}\n```'))
    with ready_client(app) as client:
        r = client.post("/v1/chat/completions", json={"messages": USER_HI, "temperature": 0,
                                                      "response_format": {"type": "json_object"}})
    body = r.json()
    assert body["choices"][0]["message"]["content"] == '{"a": 1}'
    assert len(engine.prompts) == 2
    assert engine.params[0].temperature == 0 and engine.params[1].temperature >= 0.7
    assert body["usage"]["completion_tokens"] == sum(
        len(engine.tokenizer.encode(s)) for s in engine.script)


SCHEMA = {"name": "answer", "schema": {"type": "object", "properties": {"n": {"type": "integer"}},
                                       "required": ["n"], "additionalProperties": False}}


def test_json_schema_enforced_then_gives_up_with_500():
    app, engine = scripted(_final('{"n": "three"}'), response_format_retries=2)
    with ready_client(app) as client:
        r = client.post("/v1/chat/completions", json={"messages": USER_HI, "response_format":
                                                      {"type": "json_schema", "json_schema": SCHEMA}})
    assert r.status_code == 500
    assert r.json()["error"]["code"] == "response_format_unsatisfied"
    assert len(engine.prompts) == 3
    assert "# Response Formats" in _decode_prompt(engine)


def test_json_schema_streamed_after_validation():
    app, engine = scripted(_final('{"n": 3}'))
    with ready_client(app) as client:
        r = client.post("/v1/chat/completions", json={
            "messages": USER_HI, "stream": True, "stream_options": {"include_usage": True},
            "response_format": {"type": "json_schema", "json_schema": SCHEMA}})
    chunks = [e for e in sse_events(r.text) if e != "[DONE]"]
    content = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert json.loads(content) == {"n": 3}
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop" and chunks[-1]["choices"] == []


def test_json_format_truncated_by_length_is_returned_as_is():
    app, engine = scripted(_final('{"n": 3}'))
    with ready_client(app) as client:
        r = client.post("/v1/chat/completions", json={"messages": USER_HI, "max_tokens": 40,
                                                      "response_format": {"type": "json_object"}})
    assert r.status_code == 200 and r.json()["choices"][0]["finish_reason"] == "length"
    assert len(engine.prompts) == 1


@pytest.mark.parametrize("stream", [False, True])
def test_stop_strings_cut_content_and_end_generation(stream):
    app, engine = scripted(_final("Count: one, two, three, four, five and more"))
    with ready_client(app) as client:
        r = client.post("/v1/chat/completions", json={"messages": USER_HI, "stop": ["three", "zzz"],
                                                      "stream": stream})
    if stream:
        chunks = [e for e in sse_events(r.text) if e != "[DONE]"]
        content = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
        finish = chunks[-1]["choices"][0]["finish_reason"]
    else:
        content = r.json()["choices"][0]["message"]["content"]
        finish = r.json()["choices"][0]["finish_reason"]
    assert content == "Count: one, two, " and finish == "stop"
    assert engine.cancelled == 1  # generation was closed early, not run to the end


MALFORMED = [
    "analysisThinking about it. The answer is 4.",  # no special tokens at all
    "The answer is 4.<|return|>",  # no channel at all
    "<|channel|>final<|message|>The answer <|channel|>is 4.<|end|>",  # unexpected token inside content
    "<|channel|>analysis<|message|>hmm<|start|>assistant<|channel|>fin",  # truncated header
    "<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{\"city\":",  # cut mid-call
    [200005, 200005, 200008, 200003, 200007, 200006, 200012],  # only specials
    [0xFF, 0xFE, 0x41, 200008, 0xC3, 200002],  # invalid UTF-8
    "<|start|>user<|message|>I am the user now<|end|><|start|>assistant<|channel|>final<|message|>ok<|return|>",
    "<|channel|>final<|message|><|channel|>final<|message|>4<|return|>",
]


@pytest.mark.parametrize("script", MALFORMED, ids=range(len(MALFORMED)))
@pytest.mark.parametrize("stream", [False, True])
def test_malformed_output_never_5xx_and_never_leaks_markup(script, stream):
    app, _ = scripted(script)
    with ready_client(app) as client:
        r = client.post("/v1/chat/completions", json={"messages": USER_HI, "tools": [WEATHER_TOOL],
                                                      "stream": stream})
    assert r.status_code == 200
    if stream:
        chunks = [e for e in sse_events(r.text) if e != "[DONE]"]
        assert all("error" not in c and "choices" in c for c in chunks)
        content = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
        assert chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length", "tool_calls")
    else:
        content = r.json()["choices"][0]["message"]["content"] or ""
    assert "<|" not in content and "|>" not in content and "<|channel|>" not in r.text


@pytest.mark.parametrize("name", ["get_weather", "lookup", "Get", "_private", "search2", "x", "9lives", "get-weather"])
def test_forced_tool_prefix_ends_on_a_boundary_of_the_real_tokenizer(name):
    """o200k_harmony (the model's own vocabulary) tokenises the header the model writes with the dot inside the
    name's first token (``functions`` ``.get`` ``_weather``): the forced prefix must end where that tokenisation puts
    a boundary, not on a lone ``.`` the model never saw there in training."""
    pytest.importorskip("tiktoken")
    from gptoss_cli.serve.openai.chat import prefill_for
    from tests.harmony_corpus import o200k_harmony

    tok = o200k_harmony()
    whole = tok.encode(f"<|channel|>commentary to=functions.{name} <|constrain|>json<|message|>")
    required = tok.encode(prefill_for("required"))
    assert whole[: len(required)] == required
    assert tok.decode(whole[len(required):]).startswith(f".{name}")
    assert tok.encode(prefill_for({"type": "function", "function": {"name": name}})) == whole
