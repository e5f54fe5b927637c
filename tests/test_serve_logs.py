"""``gptoss serve --log-format json``: every line on stderr is one JSON object (a real ``gptoss serve`` process)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.ports import free_port

pytestmark = pytest.mark.timeout(120)

REPO = Path(__file__).resolve().parent.parent
SCRIPTED_CLI = """
import sys
from gptoss_cli.cli import main, serve as serve_cmd
from gptoss_cli.serve.engines.scripted import ScriptedEngine
answer = "<|channel|>final<|message|>" + "ok " * 200 + "<|return|>"
serve_cmd._make_engine = lambda folder, settings: ScriptedEngine([answer], delay=0.01)
serve_cmd._check_memory = lambda folder, settings, out: out.info("gptoss: memory: plenty")
sys.argv = ["gptoss", *sys.argv[1:]]
main()
"""
CHAT = "/v1/chat/completions"


def gptoss(model: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", SCRIPTED_CLI, "serve", str(model), "--skip-verify",
                             "--log-format", "json", "--current-date", "2025-06-01", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONPATH=str(REPO)))


def all_json(text: str) -> list[dict]:
    lines = text.strip().splitlines()
    assert lines
    records = []
    for line in lines:
        try:
            records.append(json.loads(line))
        except ValueError:
            raise AssertionError(f"not a JSON line: {line!r}") from None
    return records


@pytest.fixture
def model(tmp_path: Path) -> Path:
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text("{}")
    return tmp_path / "model"


def test_every_stderr_line_is_json_from_start_to_shutdown(model: Path):
    port = free_port()
    proc = gptoss(model, "--host", "0.0.0.0", "--port", str(port))  # no API key: a warning line
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.stderr.read()
            try:
                if httpx.get(base + "/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline
            time.sleep(0.05)
        ask = {"model": "gpt-oss-20b", "messages": [{"role": "user", "content": "Hi"}]}
        assert httpx.post(base + CHAT, json=ask, timeout=30).status_code == 200
        with httpx.stream("POST", base + CHAT, json={**ask, "stream": True}, timeout=30) as r:  # dropped mid-way:
            next(r.iter_lines())  # the server logs a warning from the gptoss.serve logger
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)  # "draining" warning
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    records = all_json(proc.stderr.read())
    messages = " | ".join(str(r.get("message")) for r in records)
    assert any(r.get("level") == "warning" and "without an API key" in r["message"] for r in records), messages
    assert any(r.get("message", "").startswith("ready: ") for r in records), messages
    assert any(r.get("logger") == "gptoss.serve" and "draining" in r["message"] for r in records), messages
    assert {r.get("status") for r in records if "route" in r} >= {200, 499}
    assert proc.stdout.read() == ""


def test_a_failure_is_a_json_line_too(model: Path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        proc = gptoss(model, "--port", str(taken.getsockname()[1]))
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 3
    (record,) = all_json(err)
    assert record["level"] == "error" and "cannot listen" in record["message"] and record["exit_code"] == 3
