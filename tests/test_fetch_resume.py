"""Kill-and-resume across processes: SIGKILL `gptoss fetch` mid-file, rerun, and count bytes at the server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from gptoss_cli.fetch.download import PARTIAL_DIRNAME, WRITE_BUFFER
from gptoss_cli.lockfile import read_lock
from gptoss_cli.verify import verify_lock
from tests.hub_fixtures import FakeHub, FakeRepo, random_bytes

SHARD = "model-00000-of-00001.safetensors"
SIZE = 5 * 1024 * 1024 + 123
PAUSE_AT = 3 * 1024 * 1024 + 4567


def fetch_cmd(hub: FakeHub, dest: Path) -> list[str]:
    return [sys.executable, "-m", "gptoss_cli", "fetch", "--no-code", "--endpoint", hub.url, "--model", "org/big",
            "--dest", str(dest), "--jobs", "2"]


def part_size(dest: Path) -> int:
    parts = list((dest / PARTIAL_DIRNAME).glob("*.part")) if (dest / PARTIAL_DIRNAME).is_dir() else []
    big = [p.stat().st_size for p in parts]
    return max(big, default=0)


def test_sigkill_then_rerun_resumes_with_at_most_one_chunk_twice(tmp_path: Path) -> None:
    files = {"config.json": b'{"model_type": "gpt_oss"}\n', SHARD: random_bytes(SIZE, 7)}
    dest = tmp_path / "dest"
    with FakeHub([FakeRepo.build("org/big", files)]) as hub:
        hub.pause_after[SHARD] = PAUSE_AT
        proc = subprocess.Popen(fetch_cmd(hub, dest), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                env={**os.environ})
        try:
            assert hub.paused.wait(timeout=60), "the server never reached the pause point"
            deadline = time.monotonic() + 20
            while part_size(dest) < PAUSE_AT - WRITE_BUFFER and time.monotonic() < deadline:
                time.sleep(0.02)
            time.sleep(0.1)
            proc.kill()  # SIGKILL: no cleanup code runs
            proc.wait(timeout=20)
        finally:
            if proc.poll() is None:
                proc.kill()
        kept = part_size(dest)
        assert kept >= PAUSE_AT - WRITE_BUFFER, f"only {kept} bytes survived the kill"
        assert not (dest / "model" / SHARD).exists()

        rerun = subprocess.run(fetch_cmd(hub, dest), capture_output=True, text=True, timeout=120,
                               env={**os.environ})
        assert rerun.returncode == 0, rerun.stderr
        gets = hub.file_requests(SHARD)
        assert gets[0]["range"] is None and gets[-1]["range"] == f"bytes={kept}-"
        sent = hub.bytes_sent[SHARD]
        assert sent - SIZE <= WRITE_BUFFER, f"{sent - SIZE} bytes were downloaded twice"
        assert sent - SIZE == PAUSE_AT - kept  # exactly the unflushed tail of the killed run
    assert (dest / "model" / SHARD).read_bytes() == files[SHARD]
    assert verify_lock(dest).ok
    assert {f.path for f in read_lock(dest).files} == set(files)
    assert not (dest / PARTIAL_DIRNAME).exists()


def test_ctrl_c_on_a_stalled_download_exits_130_at_once_and_keeps_the_part(tmp_path: Path) -> None:
    """SIGINT while the server sends nothing: exit 130 promptly (not after the read timeout), no result on stdout
    (only the --json envelope saying "interrupted"), and every byte received so far stays in the part file."""
    import signal

    files = {"config.json": b'{"model_type": "gpt_oss"}\n', SHARD: random_bytes(SIZE, 7)}
    dest = tmp_path / "dest"
    with FakeHub([FakeRepo.build("org/big", files)]) as hub:
        hub.pause_after[SHARD] = PAUSE_AT
        proc = subprocess.Popen([*fetch_cmd(hub, dest), "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env={**os.environ})
        try:
            assert hub.paused.wait(timeout=60), "the server never reached the pause point"
            time.sleep(0.3)
            started = time.monotonic()
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=30)
            elapsed = time.monotonic() - started
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
        assert proc.returncode == 130, err
        assert elapsed < 8, f"took {elapsed:.1f}s to stop after Ctrl-C"
        assert "interrupted" in err and "Traceback" not in err
        doc = json.loads(out)
        assert doc == {"schema": "gptoss.fetch/1", "ok": False, "exit_code": 130,
                       "error": {"type": "Interrupted", "message": "interrupted",
                                 "hint": "rerun the same command to resume: finished files and partial downloads "
                                         "are kept in DEST"}}
        assert part_size(dest) == PAUSE_AT  # buffered bytes were flushed, not lost
        assert not (dest / "model" / SHARD).exists()
