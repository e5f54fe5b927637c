"""dify-register against the real `gptoss serve --demo` (the fake Dify's validation calls the real server).

Skipped, with the reason, while the server or its demo model is not available in this checkout.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from gptoss_cli.config import Secret
from gptoss_cli.dify import DifyClient, RegisterOptions, RegisterResult, register
from tests.dify_fake import FakeDify
from tests.dify_fake_runtime import DETAILS_OPEN, FakeChatApp, InvokeError

from tests.model_fixtures import demo_model_dir  # noqa: F401 - fixture
from tests.ports import free_port as _free_port

READY_TIMEOUT = float(os.environ.get("GPTOSS_TEST_DEMO_TIMEOUT", "240"))


def _missing() -> str | None:
    for module, attr in (("gptoss_cli.serve.openai.app", "create_app"), ("gptoss_cli.demo", "demo_model_dir")):
        try:
            if not hasattr(importlib.import_module(module), attr):
                return f"{module}.{attr} is not available yet"
        except ImportError as exc:
            return f"{module} is not importable yet ({exc})"
    return None



@pytest.fixture(scope="module")
def demo_server(tmp_path_factory: pytest.TempPathFactory, demo_model_dir: Path) -> Iterator[str]:  # noqa: F811
    reason = _missing()
    if reason:
        pytest.skip(f"real server not wired up: {reason}")
    home = tmp_path_factory.mktemp("demo-home")  # the shipped demo model needs nothing written here
    port = _free_port()
    log = home / "serve.log"
    env = {**os.environ, "GPTOSS_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    env.pop("GPTOSS_API_KEY", None)
    with open(log, "wb") as sink:
        proc = subprocess.Popen([sys.executable, "-m", "gptoss_cli", "serve", "--demo", "--host", "127.0.0.1",
                                 "--port", str(port)], stdout=sink, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        if not _wait_ready(url, proc):
            tail = " | ".join(Path(log).read_text(errors="replace").strip().splitlines()[-5:])
            pytest.fail(f"`gptoss serve --demo` did not become ready in {READY_TIMEOUT:.0f} s: {tail}")
        assert not (home / "demo").exists()  # the shipped model is served in place: nothing built or cached
        yield url + "/v1"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def _wait_ready(url: str, proc: subprocess.Popen) -> bool:
    deadline = time.monotonic() + READY_TIMEOUT
    with httpx.Client(trust_env=False, timeout=2) as http:
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if http.get(url + "/ready").status_code == 200:
                    return True
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
    return False


@pytest.mark.slow
@pytest.mark.parametrize("version", ["0.15.3", "1.5.0", "1.9.1", "1.13.3"])
def test_register_against_real_demo_server(demo_server: str, version: str) -> None:
    def once(**kw) -> RegisterResult:  # noqa: ANN003
        with httpx.Client(trust_env=False, timeout=120) as http:
            return register(DifyClient(http, fake.url),
                            RegisterOptions(endpoint_url=demo_server, email=fake.email,
                                            password=Secret(fake.password), **kw))

    with FakeDify(version=version, validate_timeout=120.0) as fake:
        result = once()
        assert result.action == "created"
        assert result.preflight is not None and result.preflight.chat_ok
        assert fake.validation_calls and fake.validation_calls[-1]["url"] == demo_server + "/chat/completions"
        assert once().action == "updated" and len(fake.records) == 1
        assert once(unregister=True).action == "removed" and fake.records == {} and fake.creds == {}


def _register(fake: FakeDify, endpoint: str, **kw) -> RegisterResult:  # noqa: ANN003
    with httpx.Client(trust_env=False, timeout=120) as http:
        return register(DifyClient(http, fake.url), RegisterOptions(endpoint_url=endpoint, email=fake.email,
                                                                    password=Secret(fake.password), **kw))


@pytest.mark.slow
def test_demo_in_dify_015_conversation_shows_then_hides_reasoning(demo_server: str) -> None:
    """Dify 0.15.3 streams: the Thinking block shows and is sent back; --hide-reasoning removes it (issue 16)."""
    with FakeDify(version="0.15.3", validate_timeout=120.0) as fake:
        assert _register(fake, demo_server).reasoning == "shown"
        chat = FakeChatApp(fake)
        first = chat.send("Who are you?")
        assert first.startswith(DETAILS_OPEN) and "</details>" in first
        second = chat.send("Who are you?")  # the stored Thinking block goes back in the history
        assert chat.sent[-1]["messages"][1]["content"] == first
        assert "<|" not in second and "Thinking..." not in second.split("</details>")[-1]
        hidden = _register(fake, demo_server, show_reasoning=False)
        assert hidden.reasoning == "hidden-by-server" and hidden.endpoint_url.endswith("/no-reasoning/v1")
        for stream in (True, False):
            answer = FakeChatApp(fake, stream=stream).send("Who are you?")
            assert answer and "<details" not in answer and "Thinking" not in answer


@pytest.mark.slow
def test_demo_cannot_satisfy_schemas_so_structured_output_is_not_registered(demo_server: str) -> None:
    schema = '{"name": "llm_response", "schema": {"type": "object", "properties": {"city": {"type": "string"}}}}'
    with FakeDify(version="1.13.3", validate_timeout=120.0) as fake:
        result = _register(fake, demo_server)
        assert result.structured_output == "not_supported" and "response_format_unsatisfied" in str(
            result.structured_output_check)
        _register(fake, demo_server, structured_output=True)  # forced: Dify now sends json_schema
        chat = FakeChatApp(fake, stream=False, params={"response_format": "json_schema", "json_schema": schema})
        with pytest.raises(InvokeError, match="status code 500.*response_format_unsatisfied"):
            chat.send("Which city is the capital of France?")


@pytest.fixture
def scripted_server() -> Iterator[tuple[str, str]]:
    """The real HTTP layer (create_app + uvicorn) over the scripted engine, with an API key."""
    try:
        from gptoss_cli.serve.openai.app import create_app
        from gptoss_cli.serve.engines.scripted import ScriptedEngine
        from gptoss_cli.serve.settings import ServeSettings
        from tests.serve_fixtures import FINAL, live_server
    except ImportError as exc:
        pytest.skip(f"real server not wired up: {exc}")
    key = "sk-scripted-server-key-789"
    app = create_app(ServeSettings(api_key=Secret(key), current_date="2025-06-01"), ScriptedEngine(script=[FINAL]))
    with live_server(app) as base:
        yield base + "/v1", key


@pytest.mark.parametrize("version", ["0.15.3", "1.9.1", "1.13.3"])
def test_register_against_real_http_layer(scripted_server: tuple[str, str], version: str) -> None:
    endpoint, key = scripted_server
    with FakeDify(version=version) as fake:
        with httpx.Client(trust_env=False, timeout=30) as http:
            result = register(DifyClient(http, fake.url),
                              RegisterOptions(endpoint_url=endpoint, email=fake.email,
                                              password=Secret(fake.password), server_api_key=Secret(key)))
        assert result.action == "created" and result.preflight is not None and result.preflight.chat_ok
        assert fake.validation_calls[-1]["headers"]["Authorization"] == f"Bearer {key}"
        if result.preflight.context_size:  # read from the server's /v1/models
            assert result.credentials["context_size"] == str(result.preflight.context_size)
        with httpx.Client(trust_env=False, timeout=30) as http:
            again = register(DifyClient(http, fake.url),
                             RegisterOptions(endpoint_url=endpoint, email=fake.email, preflight=False,
                                             password=Secret(fake.password), server_api_key=Secret(key)))
        assert again.action == "updated"
