"""Ctrl-C against a mirror sending 1 byte/s: exit 130 within seconds in every phase, and say that a rerun resumes."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.hub_fixtures import FakeHub, FakeRepo, random_bytes

SHARD = "model-00000-of-00001.safetensors"


@pytest.mark.parametrize("phase", ["api", "resolve"])
def test_ctrl_c_against_a_one_byte_per_second_mirror(tmp_path: Path, phase: str) -> None:
    files = {"config.json": b'{"model_type": "gpt_oss"}\n', SHARD: random_bytes(256 * 1024, 5)}
    dest = tmp_path / "dest"
    with FakeHub([FakeRepo.build("org/slow", files)]) as hub:
        hub.trickle = {phase}
        proc = subprocess.Popen([sys.executable, "-m", "gptoss_cli", "fetch", "--no-code", "--endpoint", hub.url,
                                 "--model", "org/slow", "--dest", str(dest), "--jobs", "2"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 60
            kind = "info" if phase == "api" else "resolve"
            while not any(r.get("kind") == kind for r in hub.requests) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert proc.poll() is None, proc.communicate()
            time.sleep(1.5)  # a few bytes are out: the client is blocked mid-answer
            started = time.monotonic()
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=30)
            elapsed = time.monotonic() - started
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
    assert proc.returncode == 130, err
    assert elapsed < 10, f"took {elapsed:.1f}s to stop after Ctrl-C"
    assert "interrupted" in err and "rerun" in err and "resume" in err, err
    assert "Traceback" not in err and out == ""
