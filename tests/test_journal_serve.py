"""``gptoss serve --journal``: one chained line per /v1/ request (key name, Dify's user, model, tokens, status, rule
ids, SHA-256 of prompt and completion), 503 while the journal cannot be written (in process and with a real
``gptoss serve`` writing to /dev/full), rotation under a real server, and ``gptoss journal verify`` on the result."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from gptoss_cli.keys import add_key
from gptoss_cli.journal.verify import verify_journal
from gptoss_cli.serve.engines.scripted import ScriptedEngine
from gptoss_cli.serve.generation.record import RequestRecord
from gptoss_cli.serve.openai.app import create_app
from gptoss_cli.serve.openai.journaling import Journal
from gptoss_cli.serve.settings import ServeSettings
from tests.ports import free_port
from tests.serve_fixtures import FINAL, USER_HI, ready_client, sse_events

pytestmark = pytest.mark.timeout(120)
REPO = Path(__file__).resolve().parent.parent
CHAT = "/v1/chat/completions"
ASK = {"model": "gpt-oss-20b", "messages": USER_HI}


def make_app(journal: Path, **settings):
    settings.setdefault("current_date", "2025-06-01")
    settings.setdefault("cache", False)
    return create_app(ServeSettings(journal=journal, **settings), ScriptedEngine(script=[FINAL]),
                      emit_access_log=lambda line: None)


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_bytes().splitlines()]


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def test_every_v1_request_is_one_chained_line_with_hashes_not_text(tmp_path):
    journal, keys = tmp_path / "j.jsonl", tmp_path / "keys.json"
    _, key = add_key(keys, "dify")
    auth = {"Authorization": f"Bearer {key}"}
    with ready_client(make_app(journal, keys_file=keys)) as client:
        assert client.post(CHAT, json={**ASK, "user": "alice@example"}, headers=auth).status_code == 200
        streamed = client.post(CHAT, json={**ASK, "stream": True}, headers=auth)
        assert sse_events(streamed.text)[-1] == "[DONE]"
        assert client.post("/v1/completions", json={"prompt": "Say hi", "model": "gpt-oss-20b"},
                           headers=auth).status_code == 200
        assert client.post(CHAT, json=ASK).status_code == 401
        assert client.get("/health").status_code == 200 and client.get("/metrics").status_code == 200
    rows = records(journal)
    assert [r["kind"] for r in rows] == ["start", "request", "request", "request", "request", "stop"]
    chat, stream, completion, refused = rows[1:5]
    assert (chat["key_name"], chat["user"], chat["model"]) == ("dify", "alice@example", "gpt-oss-20b")
    assert chat["status"] == 200
    assert chat["prompt_tokens"] > 0 and chat["completion_tokens"] > 0 and chat["rule_ids"] == []
    assert chat["prompt_sha256"] == sha(json.dumps(USER_HI, separators=(",", ":"), sort_keys=True))
    assert chat["completion_sha256"] == sha("Hello there!") == stream["completion_sha256"]
    assert completion["route"] == "/v1/completions" and completion["prompt_sha256"] == sha("Say hi")
    assert (refused["status"], refused["key_name"], refused["prompt_sha256"]) == (401, None, None)
    assert "prompt" not in chat and "Hello there!" not in journal.read_text() and key not in journal.read_text()
    assert [r["seq"] for r in rows] == list(range(1, 7)) and verify_journal([journal]).ok


def test_full_text_only_with_the_flag(tmp_path):
    journal = tmp_path / "j.jsonl"
    with ready_client(make_app(journal, journal_prompts=True)) as client:
        assert client.post(CHAT, json=ASK).status_code == 200
    (chat,) = [r for r in records(journal) if r["kind"] == "request"]
    assert chat["completion"] == "Hello there!" and json.loads(chat["prompt"]) == USER_HI


def test_policy_decisions_get_their_own_lines_before_the_request(tmp_path):
    journal = Journal.open(tmp_path / "j.jsonl")
    rec = RequestRecord(id="req-1", method="POST", path=CHAT, key_name="dify", policy_name="strict",
                        status=403, journaled=True)
    rec.policy_hits = ["no-secrets", "pii.email"]  # set by the policy engine (another part of the server)
    journal.record(rec)
    journal.record(RequestRecord(id="not-v1", method="GET", path="/health"))  # not journaled
    journal.stopped()
    rows = records(tmp_path / "j.jsonl")
    assert [(r["kind"], r.get("rule_id")) for r in rows] == [("policy", "no-secrets"), ("policy", "pii.email"),
                                                         ("request", None), ("stop", None)]
    assert rows[0]["request_id"] == rows[2]["request_id"] == "req-1" and rows[0]["policy"] == "strict"
    assert rows[2]["rule_ids"] == ["no-secrets", "pii.email"] and rows[2]["status"] == 403


class Disk:
    """os.write for the journal, with a switch: full → ENOSPC."""

    def __init__(self) -> None:
        self.full = False

    def __call__(self, fd: int, data: bytes) -> int:
        if self.full:
            raise OSError(errno.ENOSPC, "No space left on device")
        return os.write(fd, data)


@pytest.mark.parametrize("mode", ["refuse", "continue"])
def test_a_full_disk_refuses_requests_until_writes_work_again(tmp_path, mode, caplog):
    journal = tmp_path / "j.jsonl"
    app = make_app(journal, journal_on_error=mode)
    disk = Disk()
    app.state.server.journal.writer._write = disk
    with ready_client(app) as client:
        assert client.post(CHAT, json=ASK).status_code == 200
        disk.full = True
        streamed = client.post(CHAT, json={**ASK, "stream": True})  # a stream is journaled when it ends: too late
        assert streamed.status_code == 200 and sse_events(streamed.text)[-1] == "[DONE]"  # to take it back
        r = client.post(CHAT, json=ASK)
        if mode == "refuse":
            assert r.status_code == 503 and r.json()["error"]["code"] == "journal_unavailable"
            assert r.headers["retry-after"] == "5"
            assert client.get("/health").status_code == 200  # not a /v1/ request
        else:
            assert r.status_code == 200
        disk.full = False
        assert client.post(CHAT, json=ASK).status_code == 200
    rows = records(journal)
    resumed = next(r for r in rows if r["kind"] == "journal")
    assert resumed["event"] == "resumed" and resumed["error"] == "No space left on device"
    assert resumed["lost"] == 2 and resumed["refused"] == (1 if mode == "refuse" else 0)
    assert [r["kind"] for r in rows] == ["start", "request", "journal", "request", "stop"]
    assert verify_journal([journal]).ok
    assert any("cannot write the journal" in m for m in caplog.messages)


SCRIPTED_CLI = """
import sys
from gptoss_cli.cli import main, serve as serve_cmd
from gptoss_cli.serve.engines.scripted import ScriptedEngine
serve_cmd._make_engine = lambda folder, settings: ScriptedEngine(["<|channel|>final<|message|>ok<|return|>"])
serve_cmd._check_memory = lambda folder, settings, out: None
sys.argv = ["gptoss", *sys.argv[1:]]
main()
"""


def gptoss_serve(tmp_path: Path, *args: str) -> tuple[subprocess.Popen, str]:
    model = tmp_path / "model"
    model.mkdir(exist_ok=True)
    (model / "config.json").write_text("{}")
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", SCRIPTED_CLI, "serve", str(model), "--skip-verify", "--port",
                             str(port), "--no-cache", *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, env=dict(os.environ, PYTHONPATH=str(REPO)))
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        assert proc.poll() is None, proc.stderr.read()
        try:
            if httpx.get(base + "/ready", timeout=1).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "gptoss serve did not become ready"
        time.sleep(0.05)


def stop(proc: subprocess.Popen) -> str:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.stderr.read()


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
@pytest.mark.parametrize("mode,status", [("refuse", 503), ("continue", 200)])
def test_a_real_server_journaling_to_dev_full(tmp_path, mode, status):
    proc, base = gptoss_serve(tmp_path, "--journal", "/dev/full", "--journal-on-error", mode)
    try:
        r = httpx.post(base + CHAT, json=ASK, timeout=30)
        assert r.status_code == status, r.text
        if status == 503:
            assert r.json()["error"]["code"] == "journal_unavailable"
    finally:
        err = stop(proc)
    assert "cannot write the journal /dev/full" in err


def test_a_real_server_rotates_and_restarts_into_one_verified_chain(tmp_path):
    journal = tmp_path / "audit" / "j.jsonl"
    journal.parent.mkdir()
    for _ in range(2):  # a restart continues the same chain
        proc, base = gptoss_serve(tmp_path, "--journal", str(journal), "--journal-max-bytes", "4KiB")
        try:
            for i in range(6):
                assert httpx.post(base + CHAT, json={**ASK, "user": f"u{i}"}, timeout=30).status_code == 200
        finally:
            stop(proc)
    files = sorted(f for f in journal.parent.iterdir() if f.suffix != ".head")
    assert len(files) >= 3 and all(f.stat().st_size <= 4096 for f in files)
    verify = [sys.executable, "-m", "gptoss_cli", "journal", "verify", str(journal)]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    ok = subprocess.run(verify, capture_output=True, text=True, timeout=60, env=env)
    assert ok.returncode == 0 and "16 records" in ok.stdout, ok.stdout + ok.stderr  # 2 × (start + 6 + stop)
    rotated = journal.with_name("j.jsonl.1")
    lines = rotated.read_bytes().splitlines(keepends=True)
    lines[0], lines[1] = lines[1], lines[0]
    rotated.write_bytes(b"".join(lines))
    bad = subprocess.run(verify, capture_output=True, text=True, timeout=60, env=env)
    assert bad.returncode == 1 and f"{rotated}:1: reordered" in bad.stdout, bad.stdout + bad.stderr


def _cli(*args: str):
    from typer.testing import CliRunner

    from gptoss_cli.cli import app

    return CliRunner().invoke(app, ["serve", "--demo", *args])


def test_journal_options_are_checked_before_anything_slow(tmp_path):
    for args, needle in ((["--journal", str(tmp_path / "no" / "j.jsonl")], "--journal must be a file in an existing"),
                         (["--journal", str(tmp_path)], "--journal must be a file"),
                         (["--journal-on-error", "ignore"], "--journal-on-error must be one of refuse, continue"),
                         (["--journal-max-bytes", "1KiB"], "--journal-max-bytes must be at least 4KiB"),
                         (["--journal-max-bytes", "lots"], "--journal-max-bytes must be a size")):
        r = _cli(*args)
        assert r.exit_code == 2 and needle in r.stderr, (args, r.stderr)


def test_a_damaged_keys_file_stops_the_server_at_start(tmp_path):
    keys = tmp_path / "keys.json"
    keys.write_text("{")
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    proc = subprocess.run([sys.executable, "-c", SCRIPTED_CLI, "serve", str(model), "--skip-verify", "--port", "0",
                           "--keys-file", str(keys)], capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert proc.returncode == 3 and "keys file" in proc.stderr and "damaged" in proc.stderr, proc.stderr


def test_a_one_piece_reply_whose_record_cannot_be_written_becomes_a_503(tmp_path):
    journal = tmp_path / "j.jsonl"
    lines: list[str] = []
    app = create_app(ServeSettings(journal=journal, current_date="2025-06-01", cache=False),
                     ScriptedEngine(script=[FINAL]), emit_access_log=lines.append)
    disk = Disk()
    app.state.server.journal.writer._write = disk
    with ready_client(app) as client:
        disk.full = True
        r = client.post(CHAT, json=ASK)
        assert r.status_code == 503 and r.json()["error"]["code"] == "journal_unavailable"
        assert "Hello there!" not in r.text
        assert client.post(CHAT, json=ASK).status_code == 503
        disk.full = False
        assert client.post(CHAT, json=ASK).status_code == 200
    assert [line.split("status=")[1].split()[0] for line in lines if "route=/v1/" in line] == ["503", "503", "200"]
    rows = records(journal)
    assert [r["kind"] for r in rows] == ["start", "journal", "request", "stop"]
    assert rows[1]["lost"] == 2 and rows[2]["status"] == 200 and verify_journal([journal]).ok
