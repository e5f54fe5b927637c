"""Request handling over HTTP (scripted engine): header words written as text, invalid Unicode, seeds, stop ids,
tokenising off the event loop, and the OpenAPI schema as the contract (strict types, Allow, Bearer)."""

from __future__ import annotations

import json
import threading

import httpx
import pytest

from gptoss_cli.config import Secret
from gptoss_cli.serve.openai.app import create_app
from gptoss_cli.serve.engines.scripted import ByteTokenizer, ScriptedEngine
from gptoss_cli.serve.settings import ServeSettings
from tests.serve_fixtures import FINAL, USER_HI, WEATHER_TOOL, live_server, ready_client, scripted, sse_events

CHAT, COMPLETIONS = "/v1/chat/completions", "/v1/completions"
ENDOFTEXT = 199999


def _error(r, status: int = 400) -> dict:
    assert r.status_code == status, r.text
    assert "Traceback" not in r.text
    return r.json()["error"]


def _streamed(text: str) -> tuple[str, str]:
    events = [e for e in sse_events(text)[:-1] if e["choices"]]
    reasoning = "".join(e["choices"][0]["delta"].get("reasoning") or "" for e in events)
    content = "".join(e["choices"][0]["delta"].get("content") or "" for e in events)
    return reasoning, content


# ------------------------------------------------------------------------------------- header words as text


@pytest.mark.parametrize(
    "script, reasoning, content",
    [
        ("analysisLet me think.assistantfinalThe answer is 4.<|return|>", "Let me think.", "The answer is 4."),
        ("<|channel|>analysis<|message|>thinking...assistantfinal Hello<|return|>", "thinking...", "Hello"),
    ],
)
def test_header_words_written_as_text_are_recovered_streaming_or_not(script, reasoning, content):
    app, _ = scripted(script)
    with ready_client(app) as client:
        whole = client.post(CHAT, json={"messages": USER_HI}).json()["choices"][0]["message"]
        streamed = client.post(CHAT, json={"messages": USER_HI, "stream": True})
        legacy = client.post(COMPLETIONS, json={"prompt": "Hi"}).json()["choices"][0]
    assert (whole["reasoning"], whole["content"]) == (reasoning, content)
    assert _streamed(streamed.text) == (reasoning, content)
    assert (legacy["reasoning"], legacy["text"]) == (reasoning, content)


# ----------------------------------------------------------------------------------------- invalid Unicode

LONE = "\\ud800"  # as written in the JSON text: a lone high surrogate


@pytest.mark.parametrize(
    "path, body, param",
    [
        (CHAT, f'{{"messages": [{{"role": "user", "content": "hi {LONE}"}}]}}', "messages[0].content"),
        (CHAT, f'{{"messages": [{{"role": "user", "content": [{{"type": "text", "text": "{LONE}"}}]}}]}}',
         "messages[0].content[0].text"),
        (CHAT, '{"messages": [{"role": "user", "content": "hi"}], "tools": [{"type": "function", "function": '
               f'{{"name": "f", "description": "d {LONE}"}}}}]}}', "tools[0].function.description"),
        (CHAT, '{"messages": [{"role": "user", "content": "hi"}], "tools": [{"type": "function", "function": '
               f'{{"name": "f", "parameters": {{"type": "object", "properties": {{"{LONE}": {{}}}}}}}}}}]}}',
         "tools[0].function.parameters.properties"),
        (CHAT, f'{{"messages": [{{"role": "user", "content": "hi"}}], "stop": ["a", "{LONE}"]}}', "stop[1]"),
        (CHAT, f'{{"messages": [{{"role": "user", "content": "hi"}}], "model": "{LONE}"}}', "model"),
        (COMPLETIONS, f'{{"prompt": "x{LONE}y"}}', "prompt"),
        (COMPLETIONS, f'{{"prompt": ["\\udfff"], "stop": "{LONE}"}}', "prompt[0]"),
    ],
)
def test_lone_surrogates_are_a_400_anywhere_in_the_request(path, body, param):
    app, engine = scripted(FINAL)
    with ready_client(app, raise_server_exceptions=False) as client:
        r = client.post(path, content=body.encode(), headers={"content-type": "application/json"})
    err = _error(r)
    assert err["type"] == "invalid_request_error" and err["param"] == param
    assert "surrogate" in err["message"]
    assert engine.prompts == []


def test_surrogate_pairs_are_ordinary_text():
    app, engine = scripted(FINAL)
    with ready_client(app) as client:
        r = client.post(CHAT, content=b'{"messages": [{"role": "user", "content": "smile \\ud83d\\ude00"}]}',
                        headers={"content-type": "application/json"})
    assert r.status_code == 200
    assert "smile \U0001f600" in engine.tokenizer.decode(engine.prompts[0])


# --------------------------------------------------------------------------------------------------- seeds


@pytest.mark.parametrize("seed", [2**63, 2**64, 2**70, -(2**63) - 1])
@pytest.mark.parametrize("path, base", [(CHAT, {"messages": USER_HI}), (COMPLETIONS, {"prompt": "Hi"})])
def test_seeds_outside_int64_are_a_400_on_every_path(seed, path, base):
    app, engine = scripted(FINAL)
    with ready_client(app) as client:
        r = client.post(path, json={**base, "seed": seed})
    assert _error(r)["param"] == "seed"
    assert engine.prompts == []


def test_int64_seeds_reach_the_engine():
    app, engine = scripted(FINAL)
    with ready_client(app) as client:
        for seed in (2**63 - 1, -(2**63), 0):
            assert client.post(CHAT, json={"messages": USER_HI, "seed": seed}).status_code == 200
    assert [p.seed for p in engine.params] == [2**63 - 1, -(2**63), 0]


# ------------------------------------------------------------------------------------------------ stop ids


def test_endoftext_is_a_stop_id_so_no_extra_decode_step_runs():
    script = "<|channel|>final<|message|>Hi<|endoftext|>never decoded"
    app, engine = scripted(script)
    with ready_client(app) as client:
        body = client.post(CHAT, json={"messages": USER_HI}).json()
    assert ENDOFTEXT in engine.params[0].stop_token_ids
    assert body["choices"][0]["message"]["content"] == "Hi"
    assert body["usage"]["completion_tokens"] == len(engine.tokenizer.encode(script.split("never")[0]))
    assert engine.cancelled == 0  # the engine ended by itself on the stop id: nothing was generated past it


def test_stop_token_texts_live_in_one_place():
    from gptoss_cli.serve.engines import interface as engine
    from gptoss_cli.serve.openai import params
    from gptoss_cli.serve.engines.transformers import engine as transformers_engine

    assert not hasattr(params, "STOP_TOKEN_TEXTS") or params.STOP_TOKEN_TEXTS is engine.STOP_TOKEN_TEXTS
    assert not hasattr(transformers_engine, "HARMONY_STOP_TEXTS")
    assert "<|endoftext|>" in engine.STOP_TOKEN_TEXTS


# ---------------------------------------------------------------------------------- tokenising off the loop


class GateTokenizer(ByteTokenizer):
    """Holds the encoding of a huge prompt until the test has seen /health answer."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.release = threading.Event()

    def encode(self, text: str) -> list[int]:
        if len(text) > 1_000_000:
            self.entered.set()
            self.release.wait(30)
            return super().encode(text[:100])
        return super().encode(text)


@pytest.mark.parametrize("chunked", [False, True])
def test_health_answers_while_a_huge_prompt_tokenises(chunked):
    tokenizer = GateTokenizer()
    engine = ScriptedEngine(script=[FINAL], tokenizer=tokenizer)
    app = create_app(ServeSettings(current_date="2025-06-01", max_body_bytes=16 * 1024 * 1024), engine)
    payload = json.dumps({"messages": [{"role": "user", "content": "word " * (3 * 1024 * 1024 // 5)}]}).encode()
    result: dict[str, int] = {}
    with live_server(app) as base:
        def big() -> None:
            content = iter([payload[i:i + 65536] for i in range(0, len(payload), 65536)]) if chunked else payload
            r = httpx.post(base + CHAT, content=content, headers={"content-type": "application/json"}, timeout=60)
            result["status"] = r.status_code

        worker = threading.Thread(target=big)
        worker.start()
        try:
            assert tokenizer.entered.wait(30), "the huge prompt was never tokenised"
            health = httpx.get(base + "/health", timeout=10)
            assert health.status_code == 200
        finally:
            tokenizer.release.set()
            worker.join(60)
    assert result["status"] == 200


# ------------------------------------------------------------------------------------ schema as the contract


@pytest.mark.parametrize(
    "path, extra, param",
    [
        (COMPLETIONS, {"echo": 0}, "echo"),
        (CHAT, {"stream": "true"}, "stream"),
        (CHAT, {"max_tokens": "5"}, "max_tokens"),
        (CHAT, {"max_tokens": 5.5}, "max_tokens"),
        (CHAT, {"max_tokens": True}, "max_tokens"),
        (CHAT, {"temperature": "0.5"}, "temperature"),
        (CHAT, {"stream_options": {"include_usage": 1}}, "stream_options.include_usage"),
        (CHAT, {"seed": True}, "seed"),
        (CHAT, {"reasoning_effort": "HIGH"}, "reasoning_effort"),
        (CHAT, {"logprobs": 1}, "logprobs"),
        (COMPLETIONS, {"logprobs": 2}, "logprobs"),
        (COMPLETIONS, {"suffix": "x"}, "suffix"),
        (COMPLETIONS, {"prompt": ["a", "b"]}, "prompt"),
    ],
)
def test_values_the_schema_rejects_are_rejected(path, extra, param):
    base = {"messages": USER_HI} if path == CHAT else {"prompt": "Hi"}
    app, engine = scripted(FINAL)
    with ready_client(app) as client:
        r = client.post(path, json={**base, **extra})
    assert _error(r)["param"] == param
    assert engine.prompts == []


def test_numbers_are_read_as_json_schema_reads_them():
    """A whole number is a valid float, and 7.0 a valid integer (JSON Schema's integer is any whole number)."""
    app, engine = scripted(FINAL)
    with ready_client(app) as client:
        r = client.post(CHAT, json={"messages": USER_HI, "temperature": 1, "top_p": 1, "logprobs": False, "n": 1.0,
                                    "max_tokens": 7.0, "seed": 3.0})
    assert r.status_code == 200
    p = engine.params[0]
    assert (p.temperature, p.max_tokens, p.seed) == (1.0, 7, 3) and isinstance(p.seed, int)


def _properties(spec: dict, name: str) -> dict:
    return spec["components"]["schemas"][name]["properties"]


def test_openapi_declares_what_the_server_enforces():
    app, _ = scripted(FINAL)
    with ready_client(app) as client:
        spec = client.get("/openapi.json").json()
    chat, legacy = _properties(spec, "ChatCompletionRequest"), _properties(spec, "CompletionRequest")
    assert chat["n"]["minimum"] == chat["n"]["maximum"] == 1
    assert chat["logprobs"]["enum"] == [False, None] and legacy["logprobs"]["enum"] == [0, None]
    assert legacy["suffix"]["maxLength"] == 0
    assert legacy["prompt"]["minItems"] == legacy["prompt"]["maxItems"] == 1
    assert chat["stop"]["maxItems"] == 16
    seed = next(s for s in chat["seed"]["anyOf"] if s.get("type") == "integer")
    assert seed["minimum"] == -(2**63) and seed["maximum"] == 2**63 - 1
    assert set(chat["reasoning_effort"]["enum"]) == {"low", "medium", "high", "minimal", "none", None}
    assert _properties(spec, "ContentPart")["type"]["enum"] == ["text", "input_text"]
    formats = spec["components"]["schemas"]["ResponseFormat"]["oneOf"]
    assert any(f.get("required") == ["type", "json_schema"] for f in formats)
    assert "securitySchemes" not in spec.get("components", {})  # no key configured: nothing to declare


def test_openapi_declares_the_bearer_scheme_when_a_key_is_set():
    app, _ = scripted(FINAL, api_key=Secret("sk-schema-key"))
    with ready_client(app) as client:
        spec = client.get("/openapi.json").json()
    schemes = spec["components"]["securitySchemes"]
    assert list(schemes.values()) == [{"type": "http", "scheme": "bearer"}]
    name = next(iter(schemes))
    assert spec["paths"][CHAT]["post"]["security"] == [{name: []}]
    assert spec["paths"]["/v1/models"]["get"]["security"] == [{name: []}]
    assert "security" not in spec["paths"]["/health"]["get"]
    assert "sk-schema-key" not in json.dumps(spec)


def test_405_names_the_allowed_methods():
    app, _ = scripted(FINAL)
    with ready_client(app) as client:
        chat = client.get(CHAT)
        health = client.request("TRACE", "/health")
        models = client.delete("/v1/models")
    assert chat.status_code == 405 and chat.headers["allow"] == "POST"
    assert health.status_code == 405 and health.headers["allow"] == "GET"
    assert models.status_code == 405 and models.headers["allow"] == "GET"
    assert _error(chat, 405)["code"] == "method_not_allowed"


def test_tools_still_work_with_strict_types():
    app, engine = scripted(FINAL)
    with ready_client(app) as client:
        r = client.post(CHAT, json={"messages": USER_HI, "tools": [WEATHER_TOOL], "tool_choice": "auto",
                                    "parallel_tool_calls": False, "response_format": {"type": "text"}})
    assert r.status_code == 200
    assert "type get_weather" in engine.tokenizer.decode(engine.prompts[0])
