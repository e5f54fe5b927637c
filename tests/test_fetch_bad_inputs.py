"""Bad inputs to fetch and verify: one line and the documented exit code, never a hang or an internal error."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gptoss_cli.cli import app
from gptoss_cli.errors import CouldNotRun
from gptoss_cli.lockfile import LOCK_NAME
from tests.hub_fixtures import FakeHub, fake_hub  # noqa: F401 - fixture

runner = CliRunner()


def fetch(*args: str, env: dict | None = None):
    return runner.invoke(app, ["fetch", "--no-code", "--model", "org/tiny", *args], env=env)


def test_a_fifo_at_the_lock_path_does_not_hang_verify(tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    (dest / "model").mkdir(parents=True)
    os.mkfifo(dest / LOCK_NAME)
    proc = subprocess.run([sys.executable, "-m", "gptoss_cli", "verify", str(dest)], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 3 and "not a regular file" in proc.stderr, proc.stderr
    lock_flag = runner.invoke(app, ["fetch", "--no-code", "--lock", str(dest / LOCK_NAME), "--dest",
                                    str(tmp_path / "d")])
    assert lock_flag.exit_code == 3 and "not a regular file" in lock_flag.stderr


def test_a_lock_that_is_a_directory_is_named_once(tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    (dest / LOCK_NAME).mkdir(parents=True)
    res = runner.invoke(app, ["verify", str(dest)])
    assert res.exit_code == 3, res.output
    assert "is a directory" in res.stderr and f"{LOCK_NAME}/{LOCK_NAME}" not in res.stderr


@pytest.mark.parametrize("endpoint", ["http://127.0.0.1:99999", "not a url", "ftp://mirror.example/hf",
                                      "http://", "https://:443/x"])
def test_bad_endpoints_are_usage_errors_at_once(tmp_path: Path, endpoint: str) -> None:
    res = fetch("--endpoint", endpoint, "--dest", str(tmp_path / "d"))
    assert res.exit_code == 2, res.output
    assert "--endpoint" in res.stderr and "internal error" not in res.stderr
    assert not (tmp_path / "d").exists()


def test_a_portal_answering_html_is_not_a_hub_api(tmp_path: Path, fake_hub: FakeHub) -> None:
    fake_hub.html = True
    res = fetch("--endpoint", fake_hub.url, "--dest", str(tmp_path / "d"))
    assert res.exit_code == 3, res.output
    assert "not a Hugging Face Hub API" in res.stderr and "JSONDecodeError" not in res.stderr


@pytest.mark.parametrize("command", [["fetch", "--no-code"], ["verify"]])
def test_absurd_jobs_are_refused(tmp_path: Path, command: list[str]) -> None:
    res = runner.invoke(app, [*command, "--jobs", "99999999999999999999999"])
    assert res.exit_code == 2, res.output
    key = "GPTOSS_FETCH_JOBS" if command[0] == "fetch" else "GPTOSS_VERIFY_JOBS"
    dest = tmp_path / "dest"
    (dest / "model").mkdir(parents=True)
    (dest / LOCK_NAME).write_text(json.dumps({"code": None, "created_at": "2025-01-01T00:00:00Z", "files": [],
                                              "model": None, "schema_version": 1, "tool_version": "0"}))
    env_res = runner.invoke(app, [*command, *(["--dest"] if command[0] == "fetch" else []), str(dest)],
                            env={key: "100000"})
    assert env_res.exit_code == 2 and "jobs" in env_res.stderr, env_res.output


def test_a_config_json_that_is_an_array_is_one_line(tmp_path: Path) -> None:
    from gptoss_cli.serve.engines.transformers.memory import estimate_memory

    (tmp_path / "config.json").write_text("[1, 2]")
    with pytest.raises(CouldNotRun, match="not a JSON object"):
        estimate_memory(tmp_path, "cpu", "auto")
