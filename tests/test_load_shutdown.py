"""Graceful shutdown: SIGTERM during load → in-flight requests finish, new ones get 503, exit code 0."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.ports import free_port

pytestmark = [pytest.mark.timeout(180), pytest.mark.slow]

CHILD = Path(__file__).with_name("load_serve_child.py")
CHAT = "/v1/chat/completions"
ANSWER = " ".join(["ok"] * 40) + " "


def wait_ready(proc: subprocess.Popen, base: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise AssertionError(f"server exited early: {proc.stderr.read()[-2000:]}")
        try:
            if httpx.get(base + "/ready", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "server never became ready"
        time.sleep(0.05)


def start_child(delay: float, drain: float):
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(CHILD.parent.parent))
    proc = subprocess.Popen([sys.executable, str(CHILD), str(port), str(delay), str(drain)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    base = f"http://127.0.0.1:{port}"
    wait_ready(proc, base)
    return proc, base


def body(**extra):
    return {"model": "gpt-oss-20b", "messages": [{"role": "user", "content": "Hi"}], "temperature": 0.5, **extra}


async def load_then_sigterm(proc, base: str, settle: float, **extra):
    async with httpx.AsyncClient(base_url=base, timeout=60) as client:
        inflight = [asyncio.ensure_future(client.post(CHAT, json=body(**extra))) for _ in range(3)]

        async def streamed():
            async with client.stream("POST", CHAT, json=body(stream=True, **extra)) as r:
                return r.status_code, await r.aread()

        inflight.append(asyncio.ensure_future(streamed()))
        for _ in range(100):  # until all four are generating
            metrics = (await client.get("/metrics")).text
            if "gptoss_requests_in_flight 4.0" in metrics:
                break
            await asyncio.sleep(0.02)
        else:
            raise AssertionError("the requests never got going")
        proc.send_signal(signal.SIGTERM)
        for _ in range(int(max(settle, 5.0) / 0.01)):  # until the server has seen the signal, not a fixed sleep:
            if (await client.get("/ready")).status_code == 503:  # the in-flight requests may be quick on a fast CPU
                break
            await asyncio.sleep(0.01)
        late = await client.post(CHAT, json=body(**extra))
        assert (await client.get("/ready")).status_code == 503  # load balancers stop sending
        assert (await client.get("/health")).status_code == 200  # but the process is alive
        return await asyncio.gather(*inflight, return_exceptions=True), late


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def test_sigterm_lets_in_flight_finish_refuses_new_and_exits_0():
    proc, base = start_child(0.05, 20.0)  # ~2 s per request
    try:
        done, late = asyncio.run(asyncio.wait_for(load_then_sigterm(proc, base, 0.3), 60))
        assert late.status_code == 503
        assert late.json()["error"]["code"] == "shutting_down" and "retry-after" in late.headers
        for r in done[:3]:
            assert not isinstance(r, BaseException), r
            assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == ANSWER
        status, raw = done[3]
        assert status == 200 and raw.decode().endswith("data: [DONE]\n\n")
        assert proc.wait(timeout=30) == 0
        assert "EXITED CLEANLY" in proc.stdout.read()
    finally:
        stop(proc)


def test_drain_timeout_cancels_the_rest_and_still_exits_0():
    proc, base = start_child(0.2, 0.5)  # ~9 s per request, 0.5 s to drain
    try:
        t0 = time.monotonic()
        done, late = asyncio.run(asyncio.wait_for(load_then_sigterm(proc, base, 0.1), 60))
        assert late.status_code == 503
        for r in done[:3]:
            assert isinstance(r, BaseException) or r.status_code == 503
        assert proc.wait(timeout=30) == 0
        assert time.monotonic() - t0 < 8
    finally:
        stop(proc)


def test_gptoss_serve_cli_drains_on_sigterm(tmp_path):
    """The real command on a tiny model folder: in-flight requests finish, a late one gets 503, exit 0."""
    pytest.importorskip("torch")
    from tests.model_fixtures import make_tiny_model

    folder = make_tiny_model(tmp_path / "tiny")
    port = free_port()
    gptoss = Path(sys.executable).with_name("gptoss")
    proc = subprocess.Popen(
        [str(gptoss), "serve", str(folder), "--skip-verify", "--port", str(port), "--max-concurrency", "4",
         "--drain-timeout", "30", "--log-format", "json", "--current-date", "2025-06-01"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(proc, base)
        done, late = asyncio.run(asyncio.wait_for(load_then_sigterm(proc, base, 0.3, max_tokens=400), 90))
        assert late.status_code == 503
        for r in done[:3]:
            assert not isinstance(r, BaseException), r
            assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] > 0
        assert done[3][0] == 200 and done[3][1].decode().endswith("data: [DONE]\n\n")
        assert proc.wait(timeout=60) == 0
        err = proc.stderr.read()
        assert "draining" in err and '"status":503' in err
    finally:
        stop(proc)


SLOW_CLI = """
import sys
from gptoss_cli.cli import main, serve as serve_cmd
from gptoss_cli.serve.engines.scripted import ScriptedEngine
answer = "<|channel|>final<|message|>" + "ok " * 400 + "<|return|>"
serve_cmd._make_engine = lambda folder, settings: ScriptedEngine([answer], delay=0.05)
serve_cmd._check_memory = lambda folder, settings, out: None
sys.argv = ["gptoss", *sys.argv[1:]]
main()
"""


async def ten_in_flight(proc, base: str) -> None:
    """Ten requests in flight (generating or queued), then SIGTERM, then a second SIGTERM."""
    async with httpx.AsyncClient(base_url=base, timeout=120) as client:
        tasks = [asyncio.ensure_future(client.post(CHAT, json=body())) for _ in range(10)]
        for _ in range(200):
            metrics = (await client.get("/metrics")).text
            if "gptoss_requests_in_flight 4.0" in metrics and "gptoss_queue_depth 6.0" in metrics:
                break
            await asyncio.sleep(0.02)
        else:
            raise AssertionError("the requests never got going")
        proc.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.5)
        assert proc.poll() is None  # the first signal drains
        proc.send_signal(signal.SIGTERM)
        for _ in range(100):  # the clients stay connected meanwhile: nothing but the signal ends the drain
            if proc.poll() is not None:
                break
            await asyncio.sleep(0.1)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def test_second_sigterm_forces_the_exit_of_gptoss_serve(tmp_path):
    """The real command (scripted ~20 s answers, 120 s drain): a second SIGTERM ends it within 10 s, exit 130."""
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(CHILD.parent.parent))
    proc = subprocess.Popen(
        [sys.executable, "-c", SLOW_CLI, "serve", str(model), "--skip-verify", "--port", str(port),
         "--max-concurrency", "4", "--max-queue", "16", "--drain-timeout", "120", "--current-date", "2025-06-01"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(proc, base)
        asyncio.run(asyncio.wait_for(ten_in_flight(proc, base), 60))
        assert proc.poll() is not None, "still running 10 s after the second SIGTERM"
        code = proc.wait()
        err = proc.stderr.read()
        assert code == 130, err[-2000:]
        assert "stopping now" in err and "stopped by a second signal" in err.strip().splitlines()[-1]
    finally:
        stop(proc)
