"""SIGHUP reloads the policy of a running server (a real subprocess with real signal handlers): a good file takes
over whole, a bad one is refused with its line number and the policy in force stays."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.ports import free_port

CHILD = Path(__file__).with_name("policy_serve_child.py")
pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="no SIGHUP on this platform")


def policy(word: str) -> str:
    return (f'[[rules]]\nid = "no-{word}"\non = "input"\naction = "block"\nkeywords = ["{word}"]\n\n'
            f'[[rules]]\nid = "hide-{word}"\non = "output"\naction = "redact"\nkeywords = ["{word}"]\n')


def status(base: str, text: str) -> int:
    return httpx.post(base + "/v1/chat/completions", timeout=10,
                      json={"messages": [{"role": "user", "content": text}]}).status_code


def wait_for(predicate, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_sighup_reloads_the_policy_and_a_bad_file_keeps_the_old_one(tmp_path):
    path = tmp_path / "policy.toml"
    path.write_text(policy("alpha"))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([sys.executable, str(CHILD), str(port), str(path)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=dict(os.environ, PYTHONPATH=str(CHILD.parent.parent)))
    err: list[str] = []
    reader = threading.Thread(target=lambda: err.extend(iter(proc.stderr.readline, "")), daemon=True)
    reader.start()
    try:
        assert proc.stdout.readline().strip() == "READY", "".join(err)
        assert status(base, "say alpha") == 400 and status(base, "say beta") == 200
        reply = httpx.post(base + "/v1/chat/completions", json={"messages": [{"role": "user", "content": "x"}]})
        assert reply.json()["choices"][0]["message"]["content"] == "The code word is [REDACTED], then beta."

        path.write_text(policy("beta"))
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: any("policy reloaded" in line for line in err))
        assert status(base, "say beta") == 400 and status(base, "say alpha") == 200

        path.write_text(policy("gamma") + "\n[[rules]\n")  # a TOML error on line 13
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: any("policy reload failed" in line for line in err))
        line = next(x for x in err if "policy reload failed" in x)
        assert "keeping the policy in force" in line and "line 13" in line
        assert status(base, "say beta") == 400 and status(base, "say gamma") == 200  # the old policy stays
        metrics = httpx.get(base + "/metrics").text
        assert 'gptoss_policy_reloads_total{result="ok"} 1.0' in metrics
        assert 'gptoss_policy_reloads_total{result="error"} 1.0' in metrics
        assert proc.poll() is None  # a reload never stops the server
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            out, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert proc.returncode == 0 and "EXITED CLEANLY" in out
