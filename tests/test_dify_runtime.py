"""Issue 16 through the whole path: register in the fake Dify, then chat the way that Dify version's runtime calls
the model (tests/dify_fake_runtime.py), against the real gptoss HTTP layer (create_app + uvicorn, scripted engine).

Covers: history wrappers never reach the model (item 1), ``--hide-reasoning`` on every version (item 2) and
``response_format`` ``json_schema`` as Dify sends it (item 7).
"""

from __future__ import annotations

import contextlib
import json
from typing import Any, Iterator

import httpx
import pytest

from gptoss_cli.config import Secret
from gptoss_cli.dify import DifyClient, RegisterOptions, RegisterResult, register
from tests.dify_fake import FakeDify
from tests.dify_fake_runtime import DETAILS_OPEN, FakeChatApp, InvokeError
from tests.serve_fixtures import FINAL, live_server, scripted

REASONING, ANSWER = "User greets. Answer.", "Hello there!"
JSON_FINAL = ('<|channel|>analysis<|message|>Give JSON.<|end|><|start|>assistant<|channel|>final<|message|>'
              '{"ok": true, "city": "Paris"}<|return|>')
CITY_SCHEMA = {"name": "llm_response", "schema": {"type": "object", "properties": {"city": {"type": "string"}},
                                                  "required": ["city"]}}


@contextlib.contextmanager
def gptoss(*script: str) -> Iterator[tuple[str, Any]]:
    app, engine = scripted(*script)
    with live_server(app) as base:
        yield base + "/v1", engine


def reg(fake: FakeDify, endpoint: str, **kw: Any) -> RegisterResult:
    with httpx.Client(trust_env=False, timeout=60) as http:
        return register(DifyClient(http, fake.url, backoff=0.01),
                        RegisterOptions(endpoint_url=endpoint, email=fake.email, password=Secret(fake.password), **kw))


def last_prompt(engine: Any) -> str:
    return engine.tokenizer.decode(engine.prompts[-1])


# -- item 1 + 8: what each version stores and sends back ----------------------------------------------------------
def test_dify_015_sends_its_details_block_back_and_the_model_never_sees_it() -> None:
    with gptoss(FINAL) as (endpoint, engine), FakeDify(version="0.15.3") as fake:
        assert reg(fake, endpoint).reasoning == "shown"
        chat = FakeChatApp(fake)
        first = chat.send("Who are you?")
        assert first == f"{DETAILS_OPEN}{REASONING}</details>{ANSWER}"  # what 0.15.3 stores
        chat.send("And what can you do?")
        assert chat.sent[-1]["messages"][1] == {"role": "assistant", "content": first}  # sent back as is
        prompt = last_prompt(engine)
        assert f"<|start|>assistant<|channel|>final<|message|>{ANSWER}<|end|>" in prompt
        assert "<details" not in prompt and "Thinking..." not in prompt and REASONING not in prompt


@pytest.mark.parametrize("stream", [True, False])
def test_dify_1x_plugin_wraps_in_think_and_strips_it_from_history(stream: bool) -> None:
    with gptoss(FINAL) as (endpoint, engine), FakeDify(version="1.13.3") as fake:
        reg(fake, endpoint)
        chat = FakeChatApp(fake, stream=stream)
        assert chat.send("Who are you?") == f"<think>\n{REASONING}\n</think>{ANSWER}"
        chat.send("And what can you do?")
        assert chat.sent[-1]["messages"][1]["content"] == ANSWER
        assert f"<|channel|>final<|message|>{ANSWER}<|end|>" in last_prompt(engine)


# -- item 2: --hide-reasoning on every version ----------------------------------------------------------------------
@pytest.mark.parametrize(("version", "how"), [
    ("0.15.3", "hidden-by-server"), ("1.5.0", "hidden-by-server"), ("1.13.3", "hidden-by-dify")])
@pytest.mark.parametrize("stream", [True, False])
def test_hide_reasoning_hides_it_on_every_version(version: str, how: str, stream: bool) -> None:
    with gptoss(FINAL) as (endpoint, engine), FakeDify(version=version) as fake:
        result = reg(fake, endpoint, show_reasoning=False)
        assert result.reasoning == how
        assert "still reasons" in (result.reasoning_note or "") and "--reasoning-effort low" in result.reasoning_note
        chat = FakeChatApp(fake, stream=stream)
        assert chat.send("Who are you?") == ANSWER  # no Thinking block, no <think>
        assert chat.send("Again?") == ANSWER
        mounted = how == "hidden-by-server"
        assert all(("/no-reasoning/v1/" in url) == mounted for url in chat.urls)
        assert result.endpoint_url.endswith("/no-reasoning/v1" if mounted else "/v1")
        assert not any("agent_thought_support" in w for w in result.warnings)


def test_a_plugin_that_has_the_switch_but_no_filter_gets_the_mount() -> None:
    """Plugins 0.0.26 - 0.0.32 accept agent_thought_support but still show <think>: the server hides it."""
    with gptoss(FINAL) as (endpoint, _), FakeDify(version="1.13.3", plugin_version="0.0.30") as fake:
        result = reg(fake, endpoint, show_reasoning=False)
        assert result.reasoning == "hidden-by-server" and "plugin 0.0.30" in (result.reasoning_note or "")
        assert FakeChatApp(fake).send("Who are you?") == ANSWER


# -- item 7: response_format json_schema as Dify sends it -------------------------------------------------------------
@pytest.mark.parametrize("stream", [True, False])
def test_json_schema_from_dify_ends_in_a_reply_that_validates(stream: bool) -> None:
    with gptoss(JSON_FINAL) as (endpoint, _), FakeDify(version="1.13.3") as fake:
        result = reg(fake, endpoint, show_reasoning=False)
        assert (result.structured_output, result.structured_output_check) == ("supported", "ok")
        chat = FakeChatApp(fake, stream=stream,
                           params={"response_format": "json_schema", "json_schema": json.dumps(CITY_SCHEMA)})
        answer = json.loads(chat.send("Which city?"))
        assert chat.sent[-1]["response_format"] == {"type": "json_schema", "json_schema": CITY_SCHEMA}
        assert isinstance(answer["city"], str)


def test_a_server_that_cannot_satisfy_schemas_is_registered_without_structured_output() -> None:
    with gptoss(FINAL) as (endpoint, _), FakeDify(version="1.13.3") as fake:
        result = reg(fake, endpoint)
        assert result.structured_output == "not_supported" and "HTTP 500 response_format_unsatisfied" in (
            result.structured_output_check or "")
        assert any("structured output registered as not_supported" in w for w in result.warnings)
        with pytest.raises(ValueError, match="no response_format"):  # Dify offers no such parameter now
            FakeChatApp(fake, params={"response_format": "json_schema", "json_schema": "{}"}).send("x")
        forced = reg(fake, endpoint, structured_output=True)
        assert (forced.structured_output, forced.structured_output_check) == ("supported", "forced")
        chat = FakeChatApp(fake, stream=False,
                           params={"response_format": "json_schema", "json_schema": json.dumps(CITY_SCHEMA)})
        with pytest.raises(InvokeError) as info:  # the documented error, not a reply that does not validate
            chat.send("Which city?")
        assert "status code 500" in str(info.value) and "response_format_unsatisfied" in str(info.value)


def test_dify_015_has_no_structured_output_and_is_not_probed() -> None:
    with gptoss(FINAL) as (endpoint, engine), FakeDify(version="0.15.3") as fake:
        result = reg(fake, endpoint)
        assert result.structured_output is None and result.structured_output_check is None
        assert len(engine.prompts) == 2  # the preflight ping and Dify's own validation ping, no json_schema probe
        assert not any("does not accept" in w for w in result.warnings)
