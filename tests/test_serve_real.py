"""The real path: TransformersEngine on the demo model (and on a random tiny model) behind uvicorn + the openai SDK."""

from __future__ import annotations

import json

import openai
import pytest

from gptoss_cli.serve.openai.app import create_app
from gptoss_cli.serve.settings import ServeSettings
from tests.model_fixtures import demo_model_dir, make_tiny_model  # noqa: F401 - fixture
from tests.serve_fixtures import WEATHER_TOOL, live_server

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo_server(demo_model_dir):  # noqa: F811
    from gptoss_cli.demo import DEMO_CURRENT_DATE
    from gptoss_cli.serve.engines.transformers.engine import TransformersEngine

    engine = TransformersEngine(demo_model_dir, device="cpu", dtype="float32")
    app = create_app(ServeSettings(current_date=DEMO_CURRENT_DATE), engine)
    with live_server(app, ready_timeout=120) as base:
        yield openai.OpenAI(base_url=base + "/v1", api_key="unused", max_retries=0, timeout=120)


def _clean(text: str | None) -> None:
    assert "<|" not in (text or "") and "|>" not in (text or "")


def test_demo_chat_stream_and_non_stream_agree(demo_server):
    msgs = [{"role": "user", "content": "Hello! Who are you?"}]
    whole = demo_server.chat.completions.create(model="gpt-oss-20b", messages=msgs, temperature=0, max_tokens=200)
    choice = whole.choices[0]
    assert choice.finish_reason == "stop" and choice.message.content
    assert choice.message.model_extra["reasoning"]
    _clean(choice.message.content)
    _clean(choice.message.model_extra["reasoning"])
    assert whole.usage.completion_tokens < 200
    stream = demo_server.chat.completions.create(model="gpt-oss-20b", messages=msgs, temperature=0, max_tokens=200,
                                                 stream=True, stream_options={"include_usage": True})
    content, usage, finish = [], None, None
    for chunk in stream:
        usage = chunk.usage or usage
        for c in chunk.choices:
            content.append(c.delta.content or "")
            finish = c.finish_reason or finish
    assert "".join(content) == choice.message.content and finish == "stop"
    assert usage.completion_tokens == whole.usage.completion_tokens


def test_demo_calls_an_offered_tool(demo_server):
    resp = demo_server.chat.completions.create(
        model="gpt-oss-20b", messages=[{"role": "user", "content": "What is the weather in Paris?"}],
        tools=[WEATHER_TOOL], temperature=0, max_tokens=200)
    choice = resp.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]
    assert call.id.startswith("call_") and call.function.name == "get_weather"
    assert isinstance(json.loads(call.function.arguments), dict)


def test_demo_dify_validation_and_completions(demo_server):
    ping = demo_server.chat.completions.create(model="gpt-oss-20b", max_tokens=5,
                                               messages=[{"role": "user", "content": "ping"}])
    assert ping.object == "chat.completion" and ping.choices[0].finish_reason == "length"
    assert ping.usage.completion_tokens == 5
    done = demo_server.completions.create(model="gpt-oss-20b", prompt="Hello!", temperature=0, max_tokens=200)
    assert done.object == "text_completion" and done.choices[0].text
    _clean(done.choices[0].text)


def test_random_tiny_model_output_never_breaks_the_server(tmp_path):
    from gptoss_cli.serve.engines.transformers.engine import TransformersEngine

    folder = make_tiny_model(tmp_path / "tiny")
    engine = TransformersEngine(folder, device="cpu", dtype="float32")
    app = create_app(ServeSettings(current_date="2025-01-01"), engine)
    with live_server(app, ready_timeout=120) as base:
        client = openai.OpenAI(base_url=base + "/v1", api_key="unused", max_retries=0, timeout=60)
        for seed in range(3):
            r = client.chat.completions.create(model="gpt-oss-20b", messages=[{"role": "user", "content": "Hi"}],
                                               max_tokens=40, seed=seed, tools=[WEATHER_TOOL])
            _clean(r.choices[0].message.content)
            assert r.choices[0].finish_reason in ("stop", "length", "tool_calls")
        chunks = list(client.chat.completions.create(model="gpt-oss-20b", stream=True, max_tokens=40, seed=9,
                                                     messages=[{"role": "user", "content": "Hi"}]))
        assert chunks and all(c.choices is not None for c in chunks)
        _clean("".join(c.choices[0].delta.content or "" for c in chunks if c.choices))
