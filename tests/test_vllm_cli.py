"""``gptoss serve --engine vllm|upstream`` end to end: the real CLI in a subprocess, a fake ``vllm`` executable and a
fake upstream on 127.0.0.1. Shutdown stops the child; a child that keeps dying makes gptoss exit 3."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.ports import free_port
from tests.upstream_fixtures import UPSTREAM_KEY, FakeUpstream, write_fake_vllm

FRONT_KEY = "front-cli-key-93ab"
AUTH = {"Authorization": f"Bearer {FRONT_KEY}"}
ASK = {"model": "gpt-oss-20b", "messages": [{"role": "user", "content": "Capital of France?"}], "max_tokens": 32}


def gptoss(*args: str, env: dict[str, str], **kw: Any) -> subprocess.Popen:
    code = "from gptoss_cli.cli import main; main()"
    return subprocess.Popen([sys.executable, "-c", code, *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def wait_ready(proc: subprocess.Popen, url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"gptoss exited early ({proc.returncode}): {proc.stderr.read()}")
        try:
            if httpx.get(url + "/ready", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError("gptoss did not become ready")


def stop(proc: subprocess.Popen) -> tuple[int, str]:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    return proc.returncode, err


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


@pytest.fixture
def model(tmp_path: Path) -> Path:
    folder = tmp_path / "gpt-oss" / "model"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    return folder


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    bindir = tmp_path / "bin"
    write_fake_vllm(bindir)
    return {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}", "GPTOSS_API_KEY": FRONT_KEY,
            "FAKE_VLLM_LOG": str(tmp_path / "vllm.log"), "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}


def test_engine_vllm_serves_and_stops_the_child(model: Path, env: dict[str, str], tmp_path: Path) -> None:
    port = free_port()
    proc = gptoss("serve", str(model), "--engine", "vllm", "--port", str(port), "--current-date", "2026-01-02",
                  "--tensor-parallel-size", "1", "--vllm-arg=--max-num-seqs=8", env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(proc, url)
        r = httpx.post(url + "/v1/chat/completions", headers=AUTH, json=ASK, timeout=20)
        msg = r.json()["choices"][0]["message"]
        assert r.status_code == 200 and msg["reasoning_content"] == msg["reasoning"] == "User asks capital."
        with httpx.stream("POST", url + "/v1/chat/completions", headers=AUTH, json={**ASK, "stream": True},
                          timeout=20) as s:
            lines = [line for line in s.iter_lines() if line]
        assert lines[-1] == "data: [DONE]"
        assert httpx.post(url + "/v1/chat/completions", json=ASK, timeout=10).status_code == 401
    finally:
        code, err = stop(proc)
    argv, facts, pid = (tmp_path / "vllm.log").read_text().split("\n")
    assert "--max-num-seqs=8" in argv.split("\0") and facts == "12026-01-02"
    assert code == 0, err
    assert not alive(int(pid)), "the vLLM child outlived gptoss"
    assert "gptoss: ready" in err and FRONT_KEY not in err


def test_engine_vllm_child_that_keeps_dying_exits_3(model: Path, env: dict[str, str]) -> None:
    port = free_port()
    proc = gptoss("serve", str(model), "--engine", "vllm", "--port", str(port),
                  env={**env, "FAKE_VLLM_DIE_AFTER": "1.5"})
    try:
        code, err = proc.wait(timeout=120), proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert code == 3, err
    assert "gave up after 2 restart(s)" in err and err.strip().splitlines()[-1].startswith("gptoss: error:")


def test_engine_upstream(env: dict[str, str]) -> None:
    fake = FakeUpstream(require_key=UPSTREAM_KEY).start()
    port = free_port()
    proc = gptoss("serve", "--engine", "upstream", "--upstream-url", fake.url, "--upstream-api-key-env", "UPK",
                  "--port", str(port), env={**env, "UPK": UPSTREAM_KEY})
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(proc, url)
        fake.mode = "tool"
        r = httpx.post(url + "/v1/chat/completions", headers=AUTH, json=ASK, timeout=20)
        assert r.json()["choices"][0]["message"]["tool_calls"][0]["id"].startswith("call_")
        models = httpx.get(url + "/v1/models", headers=AUTH, timeout=10).json()["data"]
        assert models[0]["max_model_len"] == 8192
        fake.stop()
        r = httpx.post(url + "/v1/chat/completions", headers=AUTH, json=ASK, timeout=20)
        assert r.status_code == 503 and "unreachable" in r.json()["error"]["message"]
        assert httpx.get(url + "/ready", timeout=10).status_code == 503
    finally:
        fake.stop()
        code, err = stop(proc)
    assert code == 0 and UPSTREAM_KEY not in err


@pytest.mark.parametrize("args, code, text", [
    (["--engine", "upstream"], 2, "needs --upstream-url"),
    (["--engine", "tgi"], 2, "--engine must be one of"),
    (["--engine", "vllm", "--demo"], 2, "cannot be combined"),
    (["--engine", "upstream", "--upstream-url", "http://127.0.0.1:9/v1", "--upstream-api-key-env", "NOPE_X"], 2,
     "NOPE_X, which is not set"),
])
def test_usage_errors(args: list[str], code: int, text: str, env: dict[str, str]) -> None:
    proc = gptoss("serve", *args, env=env)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code and text in err, err


def test_missing_vllm_is_exit_3(model: Path, env: dict[str, str]) -> None:
    proc = gptoss("serve", str(model), "--engine", "vllm", env={**env, "PATH": "/usr/bin:/bin"})
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 3 and "'vllm' not found on PATH" in err, err
