"""``gptoss up`` end to end, as a new user runs it: the real CLI as a child process, against a loopback Hub serving
the shipped demo model, a git repo in tmp, the fake OSV service, a real ``gptoss serve`` and the fake Dify console
(whose credential check calls that server). Twice: the second run skips every stage and says how it knows."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.up_fixtures import UP_TIMEOUT, World, stop_server, world_factory  # noqa: F401 - fixture

pytestmark = pytest.mark.slow


def _statuses(world: World, doc: dict) -> dict[str, str]:
    return {name: s["status"] for name, s in world.stages(doc).items()}


def test_up_twice_detached_skips_and_proves_it_then_stop(world_factory) -> None:  # noqa: ANN001, F811
    world = world_factory()
    key = "sk-up-test-server-key-4242"
    world.env["GPTOSS_API_KEY"] = key  # the server requires it; Dify is given it; nobody prints it
    outputs = []
    try:
        code, first, err = world.json("up", "--detach")
        outputs += [json.dumps(first), err]
        assert code == 0, err
        assert _statuses(world, first) == {"fetch": "done", "verify": "done", "audit": "done", "serve": "done",
                                           "register": "done"}
        stages = world.stages(first)
        assert stages["fetch"]["data"]["repo_id"] == "org/demo" and stages["fetch"]["data"]["files"] == 7
        assert stages["register"]["data"]["action"] == "created"
        server = first["server"]
        assert server["url"] == f"http://127.0.0.1:{world.port}/v1" and server["detached"]
        assert world.dify.validation_calls[-1]["url"] == server["url"] + "/chat/completions"  # Dify reached it
        assert world.dify.validation_calls[-1]["headers"]["Authorization"] == f"Bearer {key}"

        st = world.status()
        assert st["lock"]["files"] == 7 and st["lock"]["model"]["repo_id"] == "org/demo"
        assert st["stages"]["verify"]["ok"] and st["stages"]["audit"]["ok"]
        assert st["server"]["running"] and st["server"]["ready"] and st["server"]["pid"] == server["pid"]
        assert st["stages"]["register"]["data"]["model"] == "gpt-oss-20b"
        assert st["stages"]["register"]["data"]["dify_url"] == world.dify.url

        requests_before = world.hub_requests()
        code, second, err = world.json("up", "--detach")
        outputs += [json.dumps(second), err]
        assert code == 0, err
        assert _statuses(world, second) == {"fetch": "skipped", "verify": "skipped", "audit": "skipped",
                                            "serve": "skipped", "register": "done"}
        stages = world.stages(second)
        assert stages["fetch"]["summary"] == "verified 7 files against the lock"
        assert stages["verify"]["data"]["counts"]["ok"] == 7 and stages["verify"]["data"]["bytes_hashed"] > 1_000_000
        assert "clean for the same inputs" in stages["audit"]["summary"]
        assert stages["serve"]["data"]["pid"] == server["pid"]
        assert stages["register"]["data"]["action"] == "updated" and len(world.dify.records) == 1
        assert world.hub_requests() == requests_before  # nothing asked of the Hub: the lock and the hashes proved it

        code, third, err = world.json("up", "--detach", "--served-model-name", "another-name")
        assert code == 3 and world.stages(third)["serve"]["status"] == "failed"  # never registers a name it lacks
        assert "serves gpt-oss-20b, not another-name" in world.stages(third)["serve"]["summary"]
        assert "gptoss stop" in world.stages(third)["serve"]["next"]
        assert world.status()["server"]["ready"]  # the running server is left alone

        logs = world.gptoss("logs", "-n", "200")
        assert logs.returncode == 0 and "gptoss: ready: gpt-oss-20b" in logs.stdout
        outputs += [logs.stdout, json.dumps(world.status())]
        outputs += [p.read_text(errors="replace") for p in (world.dest / ".gptoss").iterdir() if p.is_file()]
        for secret in (key, world.dify.password):
            assert not any(secret in text for text in outputs)
        stopped = world.gptoss("stop", "--json")
        assert stopped.returncode == 0 and json.loads(stopped.stdout)["action"] == "stopped"
        st = world.status()
        assert st["server"] is None
    finally:
        stop_server(world)


def test_foreground_up_registers_then_serves_until_ctrl_c(world_factory) -> None:  # noqa: ANN001, F811
    """The default: stages as JSON Lines, the server in the foreground; SIGINT reaches it once and drains it."""
    world = world_factory()
    proc = subprocess.Popen([sys.executable, "-m", "gptoss_cli", "up", "--no-audit", "--json"], cwd=world.cwd,
                            env=world.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        events = []
        deadline = time.monotonic() + UP_TIMEOUT
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            assert line, f"up ended early (exit {proc.wait()}): {proc.stderr.read()}"
            events.append(json.loads(line))
            if events[-1].get("stage") == "register":
                break
        assert [(e["event"], e["stage"], e["status"]) for e in events] == [
            ("stage", "fetch", "done"), ("stage", "verify", "done"), ("stage", "audit", "off"),
            ("stage", "serve", "done"), ("stage", "register", "done")]
        st = world.status()
        assert st["server"]["running"] and st["server"]["ready"] and not st["server"]["detached"]
        assert st["server"]["pid"] != proc.pid  # the server is the child; `up` supervises it
        assert st["stages"]["register"]["data"]["endpoint_url"] == st["server"]["url"]
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=90) == 0
        tail = [json.loads(x) for x in proc.stdout.read().splitlines()]
        assert tail[-1]["event"] == "exit" and tail[-1]["exit_code"] == 0
        assert world.status()["server"] is None  # the pid file went with it
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
        stop_server(world)


def test_failing_stage_stops_with_its_exit_code_and_says_what_next(world_factory) -> None:  # noqa: ANN001, F811
    world = world_factory(requirements="demo-web==2.19.0\n")  # the fake OSV knows a vulnerability in it
    code, doc, err = world.json("up", "--detach")
    assert code == 1 and doc["exit_code"] == 1 and not doc["ok"]
    assert _statuses(world, doc) == {"fetch": "done", "verify": "done", "audit": "failed", "serve": "not-run",
                                     "register": "not-run"}
    audit = world.stages(doc)["audit"]
    assert "1 known vulnerabilities" in audit["summary"] and "rerun `gptoss up`" in audit["next"]
    assert doc["error"]["hint"] == audit["next"]
    assert err.strip().splitlines()[-1].startswith("gptoss: error: audit: 1 known vulnerabilities")
    st = world.status()
    assert st["server"] is None and not world.dify.records
    assert st["stages"]["audit"]["ok"] is False and st["stages"]["audit"]["exit_code"] == 1
    assert st["stages"]["verify"]["ok"]

    before = world.hub_requests()  # resumable: the next run starts where this one stopped
    code, doc, err = world.json("up", "--no-audit", "--no-serve")
    assert code == 0, err
    assert _statuses(world, doc) == {"fetch": "skipped", "verify": "skipped", "audit": "off", "serve": "off",
                                     "register": "off"}
    assert world.hub_requests() == before
    again = world.gptoss("up", "--detach", "--no-register")  # the audit is not trusted because it failed
    assert again.returncode == 1 and "✗ audit" in again.stdout


def test_dry_run_prints_the_plan_and_writes_nothing(world_factory) -> None:  # noqa: ANN001, F811
    world = world_factory()
    code, doc, err = world.json("up", "--dry-run")
    assert code == 0, err
    assert doc["dry_run"] and set(_statuses(world, doc).values()) == {"planned"}
    stages = world.stages(doc)
    assert world.dify.url in stages["register"]["summary"] and "org/demo@main" in stages["fetch"]["summary"]
    assert stages["serve"]["data"]["argv"][:4] == ["-m", "gptoss_cli", "serve", str(Path("deploy") / "model")]
    assert not world.dest.exists() and world.hub_requests() == 0 and not world.dify.requests
    human = world.gptoss("up", "--dry-run", "--no-register", "--no-audit", "--detach")
    assert human.returncode == 0
    lines = {line.split()[1]: line for line in human.stdout.splitlines()}
    assert "off" in lines["register"] and "--no-register" in lines["register"] and "detached" in lines["serve"]
    assert not world.dest.exists()


def test_register_needs_its_password_before_anything_runs(world_factory) -> None:  # noqa: ANN001, F811
    world = world_factory()
    world.env.pop("GPTOSS_TEST_DIFY_PW")
    proc = world.gptoss("up", "--detach")
    assert proc.returncode == 2 and "--password-env" in proc.stderr
    assert not world.dest.exists() and world.hub_requests() == 0


def test_a_server_that_cannot_start_fails_the_serve_stage_with_its_error(world_factory) -> None:  # noqa: ANN001, F811
    import socket

    world = world_factory()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", world.port))
        taken.listen()
        code, doc, err = world.json("up", "--detach", "--no-audit")
    serve = world.stages(doc)["serve"]
    assert code == 3 and serve["status"] == "failed" and serve["exit_code"] == 3
    assert "exited with status 3 before it was ready" in serve["summary"] and str(world.port) in serve["summary"]
    assert world.stages(doc)["register"]["status"] == "not-run" and not world.dify.records
    st = world.status()
    assert st["server"] is None and st["stages"]["serve"]["ok"] is False
