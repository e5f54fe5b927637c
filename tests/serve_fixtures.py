"""Shared helpers for the serve tests: scripted apps, a ready TestClient, a real uvicorn server on 127.0.0.1."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from typing import Any, Iterator

from gptoss_cli.serve.openai.app import create_app
from gptoss_cli.serve.engines.scripted import ScriptedEngine
from gptoss_cli.serve.settings import ServeSettings
from tests.ports import free_port

FINAL = (
    "<|channel|>analysis<|message|>User greets. Answer.<|end|>"
    "<|start|>assistant<|channel|>final<|message|>Hello there!<|return|>"
)
TOOL_CALL = (
    "<|channel|>analysis<|message|>Need weather; call tool.<|end|><|start|>assistant<|channel|>commentary "
    'to=functions.get_weather <|constrain|>json<|message|>{"city":"Paris"}<|call|>'
)
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get current weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "description": "City name"}},
            "required": ["city"],
        },
    },
}
USER_HI = [{"role": "user", "content": "Hi"}]


def scripted(*script: str | list[int], **settings: Any) -> tuple[Any, ScriptedEngine]:
    """An app over a ScriptedEngine replaying ``script`` (settings default to a pinned date)."""
    engine = ScriptedEngine(script=list(script) or [FINAL])
    settings.setdefault("current_date", "2025-06-01")
    return create_app(ServeSettings(**settings), engine), engine


def wait_ready(client: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if client.get("/ready").status_code == 200:
            return
        time.sleep(0.01)
    raise AssertionError("server did not become ready in time")


@contextlib.contextmanager
def ready_client(app: Any, **kwargs: Any) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    with TestClient(app, **kwargs) as client:
        wait_ready(client)
        yield client


def sse_events(body: str) -> list[Any]:
    """Split an SSE body strictly as Dify does: on LF-LF, each event one ``data:`` line."""
    assert "\r" not in body
    assert body.endswith("data: [DONE]\n\n"), body[-200:]
    events = []
    for block in body.split("\n\n"):
        if not block:
            continue
        assert block.startswith("data: ") and "\n" not in block, block
        payload = block[len("data: ") :]
        events.append(payload if payload == "[DONE]" else json.loads(payload))
    return events



@contextlib.contextmanager
def live_server(app: Any, *, ready_timeout: float = 30.0) -> Iterator[str]:
    """Run ``app`` under a real uvicorn on 127.0.0.1 in a thread; yield the base URL once /ready answers 200."""
    import httpx
    import uvicorn

    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="test-uvicorn", daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + ready_timeout
        while True:
            if not thread.is_alive():
                raise AssertionError("uvicorn exited during startup")
            try:
                if httpx.get(base + "/ready", timeout=2.0).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError("uvicorn did not become ready in time")
            time.sleep(0.05)
        yield base
    finally:
        server.should_exit = True
        thread.join(timeout=15)
