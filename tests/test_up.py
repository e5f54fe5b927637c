"""``gptoss up`` end to end, as a new user runs it: the real CLI as a child process, against a loopback Hub serving
the shipped demo model, a git repo in tmp, the fake OSV service, a real ``gptoss serve`` and the fake Dify console
(whose credential check calls that server). Twice: the second run skips every stage and says how it knows."""

from __future__ import annotations

import json
import os
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
    try:
        code, first, err = world.json("up", "--detach")
        assert code == 0, err
        assert _statuses(world, first) == {"fetch": "done", "verify": "done", "audit": "done", "serve": "done",
                                           "register": "done"}
        stages = world.stages(first)
        assert stages["fetch"]["data"]["repo_id"] == "org/demo" and stages["fetch"]["data"]["files"] == 7
        assert stages["register"]["data"]["action"] == "created"
        server = first["server"]
        assert server["url"] == f"http://127.0.0.1:{world.port}/v1" and server["detached"]
        assert world.dify.validation_calls[-1]["url"] == server["url"] + "/chat/completions"  # Dify reached it
        (record,) = world.dify.records.values() if isinstance(world.dify.records, dict) else (None,)
        del record

        st = world.status()
        assert st["lock"]["files"] == 7 and st["lock"]["model"]["repo_id"] == "org/demo"
        assert st["stages"]["verify"]["ok"] and st["stages"]["audit"]["ok"]
        assert st["server"]["running"] and st["server"]["ready"] and st["server"]["pid"] == server["pid"]
        assert st["stages"]["register"]["data"]["model"] == "gpt-oss-20b"
        assert st["stages"]["register"]["data"]["dify_url"] == world.dify.url

        requests_before = world.hub_requests()
        code, second, err = world.json("up", "--detach")
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

        logs = world.gptoss("logs", "-n", "200")
        assert logs.returncode == 0 and "ready" in logs.stdout
        stopped = world.gptoss("stop", "--json")
        assert stopped.returncode == 0 and json.loads(stopped.stdout)["action"] == "stopped"
        st = world.status()
        assert st["server"] is None
    finally:
        stop_server(world)
