"""The same policy over a request-level engine (``--engine upstream`` against the fake vLLM): the upstream receives
the redacted request, never a blocked one, and its replies and relayed chunks are filtered like local ones."""

from __future__ import annotations

import json
from typing import Iterator

import httpx
import pytest

from gptoss_cli.config import Secret
from gptoss_cli.serve.engines.upstream.backend import UpstreamBackend, UpstreamConfig
from gptoss_cli.serve.generation.metrics import ServeMetrics
from gptoss_cli.serve.openai.app import create_app
from gptoss_cli.serve.settings import ServeSettings
from tests.policy_fixtures import ID_X, PHONE, write_policy
from tests.serve_fixtures import live_server, sse_events
from tests.upstream_fixtures import UPSTREAM_KEY, FakeUpstream

POLICY = '''
[[rules]]
id = "no-ids"
on = "input"
action = "block"
detectors = ["prc_id"]

[[rules]]
id = "mask-phone"
on = "input"
action = "redact"
detectors = ["phone"]
replacement = "[PHONE]"

[[rules]]
id = "city"
on = "output"
action = "redact"
keywords = ["Paris"]
channels = ["final", "tool_arguments"]
replacement = "[CITY]"

[[rules]]
id = "capital"
on = "output"
action = "redact"
keywords = ["capital"]
channels = ["reasoning"]
replacement = "***"

[[terms]]
preferred = "Lutetia"
variants = ["Lutèce"]
'''


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeUpstream]:
    server = FakeUpstream(require_key=UPSTREAM_KEY).start()
    yield server
    server.stop()


@pytest.fixture
def base(fake: FakeUpstream, tmp_path) -> Iterator[str]:
    fake.mode = "text"
    fake.requests.clear()
    metrics = ServeMetrics()
    backend = UpstreamBackend(UpstreamConfig(url=fake.url, api_key=Secret(UPSTREAM_KEY)),
                              served_model_name="gpt-oss-20b", observe=metrics.upstream_exchange)
    settings = ServeSettings(engine="upstream", policy=str(write_policy(tmp_path, POLICY)), cache=False)
    with live_server(create_app(settings, backend, metrics=metrics, emit_access_log=lambda line: None)) as url:
        yield url


def ask(base: str, content: str, **extra):
    return httpx.post(base + "/v1/chat/completions", timeout=30, json={
        "model": "gpt-oss-20b", "messages": [{"role": "user", "content": content}], **extra})


def test_input_rules_before_the_upstream(base: str, fake: FakeUpstream) -> None:
    r = ask(base, f"ID {ID_X}")
    assert r.status_code == 400 and r.json()["error"]["code"] == "policy_violation"
    assert fake.requests == []  # a blocked request never leaves the front
    r = ask(base, f"Call me on {PHONE}, capital of France?", temperature=0.3)
    assert r.status_code == 200
    sent = fake.requests[-1]["body"]
    assert sent["messages"][0] == {"role": "system", "content": "# Terminology\nAlways write the preferred term; never "
                                   "write the variants listed after it.\n- Lutetia (not: Lutèce)"}
    assert sent["messages"][1]["content"] == "Call me on [PHONE], capital of France?"
    assert sent["temperature"] == 0.3  # the rest of the client's JSON goes on as it came


def test_relayed_reply_and_stream_are_filtered(base: str, fake: FakeUpstream) -> None:
    reply = ask(base, "Capital of France?").json()["choices"][0]["message"]
    assert reply["content"] == "[CITY]." and reply["reasoning"] == "User asks ***."
    r = ask(base, "Capital of France?", stream=True)
    events = sse_events(r.text)[:-1]
    assert "Paris" not in r.text and "Par" not in r.text and "capital" not in r.text  # "Par" | "is." from upstream
    content = "".join(e["choices"][0]["delta"].get("content") or "" for e in events)
    reasoning = "".join(e["choices"][0]["delta"].get("reasoning") or "" for e in events)
    assert content == "[CITY]." and reasoning == "User asks ***."
    assert events[-1]["choices"][0]["finish_reason"] == "stop"


def test_relayed_tool_arguments(base: str, fake: FakeUpstream) -> None:
    fake.mode = "tool"
    r = ask(base, "Weather?", stream=True)
    events = sse_events(r.text)[:-1]
    args = "".join(tc["function"].get("arguments") or "" for e in events
                   for tc in e["choices"][0]["delta"].get("tool_calls") or [])
    assert json.loads(args) == {"city": "[CITY]"} and "Paris" not in r.text
