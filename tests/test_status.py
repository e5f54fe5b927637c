"""``gptoss status`` / ``stop`` / ``logs`` and the deployment state in DEST: real files, real processes, and the
standalone commands (fetch, verify, audit, dify-register) recording their last result whichever way the user went."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gptoss_cli.cli import app
from gptoss_cli.up import server as srv
from gptoss_cli.up.state import StageRecord, read_state, record, record_quietly, state_path
from tests.dify_fake import StubOpenAI
from tests.git_fixtures import git
from tests.up_fixtures import world_factory  # noqa: F401 - fixture

runner = CliRunner()


def _status(dest: Path) -> dict:
    result = runner.invoke(app, ["--json", "status", "--dest", str(dest)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


# -- the state file ----------------------------------------------------------------------------------------------

def test_state_records_are_kept_per_stage_and_written_atomically(tmp_path: Path) -> None:
    record(tmp_path, StageRecord("verify", True, 0, "7 ok"))
    record(tmp_path, StageRecord("audit", False, 1, "1 known vulnerability", data={"outcome": "vulnerable"}))
    record(tmp_path, StageRecord("verify", False, 1, "1 mismatch"))
    state = read_state(tmp_path)
    assert {k: (v.ok, v.summary) for k, v in state.stages.items()} == {
        "verify": (False, "1 mismatch"), "audit": (False, "1 known vulnerability")}
    assert state.get("audit").data == {"outcome": "vulnerable"} and state.get("audit").at.endswith("Z")
    assert sorted(p.name for p in state_path(tmp_path).parent.iterdir()) == ["state.json", "state.lock"]  # no tmp


def test_concurrent_writers_keep_every_record(tmp_path: Path) -> None:
    names = ["fetch", "verify", "audit", "serve", "register"] * 4
    threads = [threading.Thread(target=record, args=(tmp_path, StageRecord(n, True, 0, f"{n} {i}")))
               for i, n in enumerate(names)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert set(read_state(tmp_path).stages) == set(names)


def test_damaged_or_missing_state_reads_as_empty(tmp_path: Path) -> None:
    assert read_state(tmp_path / "nowhere").stages == {}
    state_path(tmp_path).parent.mkdir()
    state_path(tmp_path).write_text('{"stages": {"verify": {"stage": "audit"}, "x": 3}')
    assert read_state(tmp_path).stages == {}
    state_path(tmp_path).write_text('{"stages": {"verify": {"stage": "verify", "ok": true}}}')  # no exit_code
    assert read_state(tmp_path).stages == {}


def test_record_quietly_never_raises(tmp_path: Path) -> None:
    assert record_quietly(tmp_path / "missing", StageRecord("verify", True, 0, "ok")) is not None
    assert not (tmp_path / "missing").exists()  # a DEST that does not exist is not made
    state_path(tmp_path).mkdir(parents=True)  # unwritable as a file, even for root
    assert "state not recorded" in record_quietly(tmp_path, StageRecord("verify", True, 0, "ok"))


# -- status, stop and logs without a deployment --------------------------------------------------------------------

def test_status_of_nothing(tmp_path: Path) -> None:
    doc = _status(tmp_path / "deploy")
    assert doc["lock"] is None and doc["server"] is None and doc["stages"] == {} and doc["exit_code"] == 0
    human = runner.invoke(app, ["status", "--dest", str(tmp_path / "deploy")])
    assert human.exit_code == 0 and "fetched   no" in human.stdout and "never registered" in human.stdout
    assert not (tmp_path / "deploy").exists()  # status writes nothing


def test_stop_and_logs_without_a_server(tmp_path: Path) -> None:
    stopped = runner.invoke(app, ["--json", "stop", "--dest", str(tmp_path)], catch_exceptions=False)
    assert stopped.exit_code == 0 and json.loads(stopped.stdout)["action"] == "not-running"
    logs = runner.invoke(app, ["logs", "--dest", str(tmp_path)])
    assert logs.exit_code == 3 and "no server log" in logs.stderr


def _fake_server(dest: Path, script: str) -> subprocess.Popen:
    """A real process whose command line says gptoss serve (what stop/status check), with a pid file for it."""
    proc = subprocess.Popen([sys.executable, "-c", script, "gptoss_cli", "serve"])
    srv.write_pid(dest, srv.ServerInfo(pid=proc.pid, url="http://127.0.0.1:9/v1", model="m", engine="e",
                                       model_dir=str(dest / "model"), detached=True, log=str(srv.log_path(dest)),
                                       started_at="2026-01-01T00:00:00Z"))
    return proc


def test_stop_sends_sigterm_and_waits(tmp_path: Path) -> None:
    proc = _fake_server(tmp_path, "import time; time.sleep(120)")
    try:
        doc = _status(tmp_path)
        assert doc["server"]["pid"] == proc.pid and doc["server"]["running"] and not doc["server"]["ready"]
        threading.Thread(target=proc.wait, daemon=True).start()  # reap it as its parent would
        stopped = runner.invoke(app, ["--json", "stop", "--dest", str(tmp_path)], catch_exceptions=False)
        assert stopped.exit_code == 0 and json.loads(stopped.stdout)["action"] == "stopped"
        assert proc.wait(timeout=10) == -15
        assert _status(tmp_path)["server"] is None and not srv.pid_path(tmp_path).exists()
        assert read_state(tmp_path).get("serve").data["stopped"] is True
    finally:
        proc.kill()


def test_stop_reports_a_server_that_will_not_exit(tmp_path: Path) -> None:
    proc = _fake_server(tmp_path, "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                                  "print('up', flush=True); time.sleep(120)")
    try:
        time.sleep(0.5)  # let it install the handler
        stopped = runner.invoke(app, ["stop", "--dest", str(tmp_path), "--timeout", "1"])
        assert stopped.exit_code == 3 and f"kill -9 {proc.pid}" in stopped.stderr
        assert proc.poll() is None and srv.pid_path(tmp_path).exists()
    finally:
        proc.kill()
        proc.wait(timeout=10)


def test_stale_pid_file_is_reported_and_cleaned(tmp_path: Path) -> None:
    proc = _fake_server(tmp_path, "pass")
    proc.wait(timeout=30)
    assert _status(tmp_path)["server"]["running"] is False
    human = runner.invoke(app, ["status", "--dest", str(tmp_path)])
    assert "not running (pid" in human.stdout
    stopped = runner.invoke(app, ["--json", "stop", "--dest", str(tmp_path)], catch_exceptions=False)
    assert json.loads(stopped.stdout)["action"] == "stale" and not srv.pid_path(tmp_path).exists()


def test_logs_tail_json_and_follow_until_the_server_exits(tmp_path: Path) -> None:
    srv.log_path(tmp_path).parent.mkdir(parents=True)
    srv.log_path(tmp_path).write_text("one\ntwo\nthree\n")
    tail = runner.invoke(app, ["logs", "--dest", str(tmp_path), "-n", "2"], catch_exceptions=False)
    assert tail.exit_code == 0 and tail.stdout == "two\nthree\n"
    doc = json.loads(runner.invoke(app, ["--json", "logs", "--dest", str(tmp_path), "-n", "1"]).stdout)
    assert doc["lines"] == ["three"]
    proc = _fake_server(tmp_path, "import time, sys; time.sleep(1.0); "
                                  f"open({str(srv.log_path(tmp_path))!r}, 'a').write('four\\n')")
    followed = subprocess.run([sys.executable, "-m", "gptoss_cli", "logs", "-f", "-n", "1", "--dest", str(tmp_path)],
                              capture_output=True, text=True, timeout=60)
    proc.wait(timeout=10)
    assert followed.returncode == 0 and followed.stdout == "three\nfour\n"


# -- standalone commands keep the state right ----------------------------------------------------------------------

@pytest.mark.slow
def test_standalone_commands_record_their_results(world_factory) -> None:  # noqa: ANN001, F811
    world = world_factory()
    assert world.gptoss("fetch").returncode == 0
    st = world.status()
    assert st["lock"]["files"] == 7 and st["stages"]["fetch"]["data"]["repo_id"] == "org/demo"
    assert "verify" not in st["stages"]

    assert world.gptoss("verify").returncode == 0
    assert world.status()["stages"]["verify"]["ok"]
    (world.dest / "model" / "config.json").write_text("{}")
    assert world.gptoss("verify").returncode == 1
    verify = world.status()["stages"]["verify"]
    assert not verify["ok"] and verify["exit_code"] == 1 and verify["data"]["counts"]["mismatch"] == 1

    assert world.gptoss("audit").returncode == 0
    assert world.status()["stages"]["audit"]["data"]["outcome"] == "clean"

    code, doc, err = world.json("up", "--no-serve")  # repairs the file; reuses the standalone audit
    assert code == 0, err
    stages = world.stages(doc)
    assert stages["fetch"]["status"] == "done" and "repairing" in stages["fetch"]["data"]["reason"]
    assert stages["verify"]["status"] == "done" and stages["audit"]["status"] == "skipped"
    assert world.status()["stages"]["verify"]["ok"]

    git("-c", "user.name=t", "-c", "user.email=t@example.invalid", "commit", "-q", "--allow-empty", "-m", "local",
        cwd=world.dest / "code")  # code/ no longer at the locked commit: up notices and fetches it again
    code, doc, err = world.json("up", "--no-serve")
    assert code == 0, err
    fetch = world.stages(doc)["fetch"]
    assert fetch["status"] == "done" and "code/ is at" in fetch["data"]["reason"]
    assert git("rev-parse", "HEAD", cwd=world.dest / "code") == world.status()["lock"]["code"]["commit"]

    with StubOpenAI() as stub:
        assert world.gptoss("dify-register", "--endpoint-url", stub.url, "--set-default").returncode == 0
    reg = world.status()["stages"]["register"]
    assert reg["data"]["endpoint_url"] == stub.url and reg["data"]["default"] is True
    human = world.gptoss("status")
    assert "gpt-oss-20b at " + world.dify.url in human.stdout and "default LLM" in human.stdout


@pytest.mark.slow
def test_a_dest_whose_state_cannot_be_written_still_verifies(world_factory) -> None:  # noqa: ANN001, F811
    world = world_factory()
    assert world.gptoss("fetch", "--no-code").returncode == 0
    state_path(world.dest).unlink()
    state_path(world.dest).mkdir()  # os.replace onto a folder fails, even for root
    proc = world.gptoss("verify", "-v")
    assert proc.returncode == 0 and "state not recorded" in proc.stderr
    assert world.status()["stages"] == {}
