"""``gptoss serve``: argument handling, verification, the ready line, warnings, and a real run (scripted engine)."""

from __future__ import annotations

import contextlib
import hashlib
import socket
import threading
import time

import httpx
import pytest
import uvicorn
from typer.testing import CliRunner

from gptoss_cli.cli import app
from gptoss_cli.cli import serve as serve_cmd
from gptoss_cli.config import Secret
from gptoss_cli.lockfile import Lock, LockedFile, ModelPin, write_lock
from gptoss_cli.serve.engines.scripted import ScriptedEngine
from gptoss_cli.serve.runtime import base_url, bind, example_curl
from gptoss_cli.serve.settings import ServeSettings, host_is_loopback
from tests.ports import free_port
from tests.serve_fixtures import FINAL

KEY = "sk-cli-secret-31415926"


@pytest.fixture
def model_dest(tmp_path):
    """DEST/model/ with one file and a matching DEST/gptoss.lock.json."""
    model = tmp_path / "dest" / "model"
    model.mkdir(parents=True)
    data = b'{"model_type": "gpt_oss"}'
    (model / "config.json").write_bytes(data)
    pin = ModelPin(source="hf", repo_id="openai/gpt-oss-20b", commit="0" * 40, endpoint="https://huggingface.co")
    lock = Lock(code=None, model=pin, files=(LockedFile("config.json", len(data), hashlib.sha256(data).hexdigest(),
                                                         "lfs"),))
    write_lock(tmp_path / "dest" / "gptoss.lock.json", lock)
    return model


@pytest.fixture
def fake_engine(monkeypatch):
    """Replace the real engine and memory check (tested elsewhere) with a scripted engine."""
    engines: list[ScriptedEngine] = []

    def make(folder, settings):
        engines.append(ScriptedEngine(script=[FINAL], description="scripted"))
        return engines[-1]

    monkeypatch.setattr(serve_cmd, "_make_engine", make)
    monkeypatch.setattr(serve_cmd, "_check_memory", lambda folder, settings, out: None)
    return engines


def _run(args, **kwargs):
    return CliRunner().invoke(app, args, catch_exceptions=False, **kwargs)


def test_demo_and_model_dir_conflict(tmp_path, fake_engine):
    r = _run(["serve", str(tmp_path), "--demo"])
    assert r.exit_code == 2 and "not both" in r.stderr


def test_missing_model_folders(tmp_path, fake_engine, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = _run(["serve"])
    assert r.exit_code == 3 and "gptoss fetch" in r.stderr
    r = _run(["serve", str(tmp_path / "nope")])
    assert r.exit_code == 2 and "does not exist" in r.stderr


def test_bad_reasoning_effort_is_a_usage_error(model_dest, fake_engine):
    r = _run(["serve", str(model_dest), "--reasoning-effort", "extreme", "--skip-verify"])
    assert r.exit_code == 2 and "--reasoning-effort must be one of low, medium, high" in r.stderr


def test_bad_decode_step_is_a_usage_error(model_dest, fake_engine, monkeypatch):
    r = _run(["serve", str(model_dest), "--decode-step", "turbo", "--skip-verify"])
    assert r.exit_code == 2 and "--decode-step must be one of fast, transformers" in r.stderr
    monkeypatch.setenv("GPTOSS_SERVE_DECODE_STEP", "slow")
    r = _run(["serve", str(model_dest), "--skip-verify"])
    assert r.exit_code == 2 and "GPTOSS_SERVE_DECODE_STEP" in r.stderr and "fast, transformers" in r.stderr


@pytest.mark.parametrize("args, named", [
    (["--port", "70000"], "--port"), (["--port", "65536"], "--port"), (["--port", "-1"], "--port"),
    (["--host", "not a host!"], "--host"), (["--host", ""], "--host"),
    (["--max-concurrency", "0"], "--max-concurrency"), (["--max-queue", "-1"], "--max-queue"),
    (["--drain-timeout", "-1"], "--drain-timeout"), (["--drain-timeout", "nan"], "--drain-timeout"),
    (["--request-timeout", "0"], "--request-timeout"), (["--request-timeout", "-5"], "--request-timeout"),
    (["--kv-cache-memory", "0"], "--kv-cache-memory"), (["--kv-cache-memory", "1B"], "--kv-cache-memory"),
    (["--kv-cache-memory", "lots"], "--kv-cache-memory"), (["--log-format", "xml"], "--log-format"),
    (["--device", "tpu"], "--device"), (["--dtype", "float8"], "--dtype"), (["--dtype", "float16"], "--dtype float16"),
    (["--current-date", "2025-13-40"], "--current-date"), (["--served-model-name", ""], "--served-model-name"),
    (["--cache-url", "http://cache"], "--cache-url"), (["--engine", "tgi"], "--engine"),
])
def test_every_option_is_checked_before_anything_loads(model_dest, fake_engine, monkeypatch, args, named):
    """Exit 2, one line naming the option, before verification, the memory check or the engine."""
    monkeypatch.setattr(serve_cmd, "_verify", lambda *a: pytest.fail("must not verify"))
    r = _run(["serve", str(model_dest), *args])
    assert r.exit_code == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gptoss: error: ") and named in lines[0], lines
    assert fake_engine == []


def test_options_from_the_environment_are_named_by_their_variable(model_dest, fake_engine, monkeypatch):
    monkeypatch.setenv("GPTOSS_SERVE_PORT", "70000")
    r = _run(["serve", str(model_dest)])
    assert r.exit_code == 2 and "GPTOSS_SERVE_PORT (--port) must be an integer from 0 to 65535" in r.stderr
    assert fake_engine == []


def test_lock_mismatch_refuses_to_start(model_dest, fake_engine):
    (model_dest / "config.json").write_bytes(b'{"model_type": "tampered"}')
    r = _run(["serve", str(model_dest), "--port", "0"])
    assert r.exit_code == 1 and "does not match" in r.stderr
    assert fake_engine == []


def test_port_in_use_is_exit_3_before_verifying_or_loading(model_dest, fake_engine, monkeypatch):
    monkeypatch.setattr(serve_cmd, "_verify", lambda *a: pytest.fail("must not verify"))
    monkeypatch.setattr(serve_cmd, "_demo_model", lambda *a: pytest.fail("must not build the demo model"))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        for args in ([str(model_dest)], ["--demo"]):
            r = _run(["serve", *args, "--port", str(taken.getsockname()[1])])
            lines = r.stderr.strip().splitlines()
            assert r.exit_code == 3 and len(lines) == 1 and "cannot listen" in lines[0], lines
    assert fake_engine == []


@contextlib.contextmanager
def serving(monkeypatch, args, base):
    """Run ``gptoss serve ARGS`` (CliRunner) in a thread until ``base``/ready answers; yield the result holder."""
    servers: list[uvicorn.Server] = []
    real_run = uvicorn.Server.run

    def capture(self, sockets=None):
        servers.append(self)
        return real_run(self, sockets=sockets)

    monkeypatch.setattr(uvicorn.Server, "run", capture)
    result: dict = {}
    thread = threading.Thread(target=lambda: result.setdefault("r", _run(["serve", *args])), daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"{base}/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert thread.is_alive(), result["r"].stderr
            assert time.monotonic() < deadline, "server did not become ready"
            time.sleep(0.05)
        yield result
    finally:
        deadline = time.monotonic() + 10
        while not servers and time.monotonic() < deadline:
            time.sleep(0.01)
        servers[0].should_exit = True
        thread.join(15)


def test_serve_runs_prints_one_ready_line_and_answers(model_dest, fake_engine, monkeypatch):
    monkeypatch.setenv("GPTOSS_API_KEY", KEY)
    port = free_port()
    args = [str(model_dest), "--host", "0.0.0.0", "--port", str(port), "--served-model-name", "mine",
            "--alias", "other", "--current-date", "2025-01-02"]
    with serving(monkeypatch, args, f"http://127.0.0.1:{port}") as result:
        r = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", timeout=5,
                       headers={"Authorization": f"Bearer {KEY}"},
                       json={"model": "other", "messages": [{"role": "user", "content": "Hi"}]})
        assert r.json()["choices"][0]["message"]["content"] == "Hello there!"
        assert "Current date: 2025-01-02" in fake_engine[0].tokenizer.decode(fake_engine[0].prompts[0])
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)  # the load layers are installed
        assert metrics.status_code == 200 and "gptoss_requests_total" in metrics.text
    r = result["r"]
    assert r.exit_code == 0, r.stderr
    ready = [line for line in r.stderr.splitlines() if "ready:" in line]
    assert len(ready) == 1
    assert f"http://127.0.0.1:{port}/v1" in ready[0] and "curl" in ready[0] and "$GPTOSS_API_KEY" in ready[0]
    assert "warning" not in r.stderr  # an API key is set
    assert KEY not in r.stderr + r.stdout


@pytest.mark.parametrize("host", ["[::1]", "::1", "::", "[::]"])
def test_ipv6_hosts_serve_and_the_ready_line_never_names_a_variable_that_was_not_used(
        model_dest, fake_engine, monkeypatch, host):
    port = free_port()
    args = [str(model_dest), "--skip-verify", "--host", host, "--port", str(port), "--api-key", KEY]
    with serving(monkeypatch, args, f"http://[::1]:{port}") as result:
        r = httpx.post(f"http://[::1]:{port}/v1/chat/completions", timeout=5, headers={"Authorization": f"Bearer {KEY}"},
                       json={"model": "gpt-oss-20b", "messages": [{"role": "user", "content": "Hi"}]})
        assert r.status_code == 200
    r = result["r"]
    assert r.exit_code == 0, r.stderr
    ready = [line for line in r.stderr.splitlines() if "ready:" in line]
    assert len(ready) == 1 and f"http://[::1]:{port}/v1" in ready[0]
    assert "$GPTOSS_API_KEY" not in ready[0] and "<the --api-key value>" in ready[0]
    assert KEY not in r.stderr + r.stdout


def test_warns_beyond_loopback_without_key(model_dest, fake_engine, monkeypatch):
    import gptoss_cli.serve.runtime as runner

    def stop(host, port):
        raise serve_cmd.CouldNotRun("stop here")

    monkeypatch.setattr(runner, "bind", stop)
    r = _run(["serve", str(model_dest), "--host", "0.0.0.0"])
    assert "without an API key" in r.stderr and r.exit_code == 3


def test_runner_helpers():
    assert base_url("0.0.0.0", 80) == "http://127.0.0.1:80"
    assert base_url("::1", 8000) == "http://[::1]:8000"
    assert host_is_loopback("127.0.0.1") and host_is_loopback("::1") and host_is_loopback("localhost")
    assert not host_is_loopback("0.0.0.0") and not host_is_loopback("10.0.0.1")
    curl = example_curl(ServeSettings(), "http://127.0.0.1:8000")
    assert curl.startswith("curl http://127.0.0.1:8000/v1/chat/completions") and "gpt-oss-20b" in curl
    keyed = ServeSettings(api_key=Secret(KEY))
    assert '"Authorization: Bearer $MY_KEY"' in example_curl(keyed, "http://h:1", "env:MY_KEY")
    for source, shown in (("flag", "<the --api-key value>"), ("file:/x/gptoss.toml", "<the serve.api_key value>")):
        curl = example_curl(keyed, "http://h:1", source)
        assert shown in curl and "$" not in curl and KEY not in curl
    assert ServeSettings(host="[::1]").host == "::1" and base_url("::", 80) == "http://[::1]:80"
    sock = bind("127.0.0.1", 0)
    try:
        assert sock.getsockname()[1] > 0
    finally:
        sock.close()


def test_serve_settings_from_config():
    from gptoss_cli.config import load_settings

    s = ServeSettings.from_config(load_settings({"serve.aliases": ["a", "b"], "serve.port": 9}, env={}),
                                  current_date="2025-02-03")
    assert s.aliases == ("a", "b") and s.port == 9 and s.current_date == "2025-02-03"
    assert s.model_names == ("gpt-oss-20b", "a", "b")


def test_memory_check_refuses_with_numbers(tmp_path, monkeypatch):
    import json

    import torch
    from safetensors.torch import save_file

    from gptoss_cli.serve.engines.transformers import memory

    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({
        "model_type": "gpt_oss", "num_hidden_layers": 2, "hidden_size": 64, "num_attention_heads": 4,
        "num_key_value_heads": 2, "head_dim": 16, "max_position_embeddings": 512, "vocab_size": 1024}))
    save_file({"w": torch.zeros(1024, 64)}, str(model / "model.safetensors"))
    monkeypatch.setattr(memory, "available_bytes", lambda device: 1024)
    monkeypatch.setattr(serve_cmd, "_make_engine", lambda folder, settings: pytest.fail("must not load"))
    r = _run(["serve", str(model), "--device", "cpu", "--port", "0"])
    assert r.exit_code == 3
    assert "needs about" in r.stderr and "available" in r.stderr and "GiB" in r.stderr


def test_mxfp4_native_that_cannot_run_is_refused_before_loading(tmp_path, monkeypatch):
    from tests.model_fixtures import make_virtual_20b

    model = make_virtual_20b(tmp_path / "model")
    monkeypatch.setattr(serve_cmd, "_make_engine", lambda folder, settings: pytest.fail("must not load"))
    r = _run(["serve", str(model), "--device", "cpu", "--port", "0", "--mxfp4", "native"])
    assert r.exit_code == 3
    assert "--mxfp4 native cannot run here: native MXFP4 kernels need a CUDA device" in r.stderr
    r = _run(["serve", str(model), "--device", "cpu", "--port", "0", "--mxfp4", "fast"])
    assert r.exit_code == 2 and "--mxfp4" in r.stderr


def test_without_max_model_len_the_context_is_fitted_and_said(tmp_path, monkeypatch):
    from gptoss_cli.serve.engines.transformers import memory
    from tests.model_fixtures import make_virtual_20b

    model = make_virtual_20b(tmp_path / "model")
    monkeypatch.setattr(memory, "available_bytes", lambda device: 22 * 1024**3)
    monkeypatch.setattr(serve_cmd, "_make_engine", lambda folder, settings: (_ for _ in ()).throw(
        KeyboardInterrupt()))  # stop right after the memory check
    r = _run(["serve", str(model), "--device", "cpu", "--port", "0"])
    assert "MXFP4 experts packed" in r.stderr and "MXFP4 experts: packed" in r.stderr
    assert "the most that fits in 22.0 GiB available on cpu" in r.stderr
