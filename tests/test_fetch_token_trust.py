"""The Hub token: huggingface_hub's own lookup (hf auth login), and a project ./gptoss.toml cannot redirect it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gptoss_cli.cli import app
from tests.hub_fixtures import FakeHub, fake_hub  # noqa: F401 - fixture

runner = CliRunner()
TOKEN = "hf_SavedByHfAuthLogin0123456789"


def authed(hub: FakeHub) -> list[bool]:
    return [r["auth"] for r in hub.requests if r.get("kind") in ("info", "tree", "resolve")]


@pytest.mark.parametrize("where", ["HF_TOKEN_PATH", "HF_HOME"])
def test_the_token_saved_by_hf_auth_login_is_used(tmp_path: Path, fake_hub: FakeHub, where: str) -> None:
    fake_hub.require_token = TOKEN  # a gated repository: 401 without it
    if where == "HF_TOKEN_PATH":
        token_file = tmp_path / "elsewhere" / "my-token"
        env = {**os.environ, "HF_TOKEN_PATH": str(token_file)}
    else:
        token_file = Path(os.environ["HF_HOME"]) / "token"
        env = {**os.environ}
    token_file.parent.mkdir(parents=True, exist_ok=True)
    token_file.write_text(TOKEN + "\n")
    argv = [sys.executable, "-m", "gptoss_cli", "fetch", "--no-code", "--endpoint", fake_hub.url, "--model",
            "org/tiny", "--dest", str(tmp_path / "dest")]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    assert all(authed(fake_hub)) and TOKEN not in proc.stdout + proc.stderr
    off = subprocess.run([*argv[:-1], str(tmp_path / "off")], capture_output=True, text=True, timeout=120,
                         env={**env, "HF_HUB_DISABLE_IMPLICIT_TOKEN": "1"})
    assert off.returncode == 3 and "private" in off.stderr


def _project(tmp_path: Path, text: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    repo = tmp_path / "cloned-repo"
    repo.mkdir()
    (repo / "gptoss.toml").write_text(text)
    monkeypatch.chdir(repo)
    return repo


def fetch(hub: FakeHub, dest: Path, *args: str, env: dict | None = None):
    return runner.invoke(app, ["fetch", "--no-code", "--model", "org/tiny", "--dest", str(dest), *args],
                         env={"HF_TOKEN": TOKEN, **(env or {})})


def test_a_project_file_endpoint_is_announced_and_gets_no_token(tmp_path: Path, fake_hub: FakeHub,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    _project(tmp_path, f'[fetch]\nendpoint = "{fake_hub.url}"\n', monkeypatch)
    res = fetch(fake_hub, tmp_path / "a")
    assert res.exit_code == 0, res.output
    assert authed(fake_hub) and not any(authed(fake_hub))  # HF_TOKEN never went to the project's endpoint
    assert "project file" in res.stderr and "gptoss.toml" in res.stderr
    assert "not sending the token from env:HF_TOKEN" in res.stderr and TOKEN not in res.stderr
    fake_hub.requests.clear()
    flagged = fetch(fake_hub, tmp_path / "b", "--endpoint", fake_hub.url)  # named by the user: trusted
    assert flagged.exit_code == 0 and all(authed(fake_hub)) and "not sending" not in flagged.stderr
    fake_hub.requests.clear()
    env_named = fetch(fake_hub, tmp_path / "c", env={"HF_ENDPOINT": fake_hub.url})
    assert env_named.exit_code == 0 and all(authed(fake_hub))


def test_a_project_file_may_send_its_own_token_and_user_config_is_trusted(tmp_path: Path, fake_hub: FakeHub,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    repo = _project(tmp_path, f'[fetch]\nendpoint = "{fake_hub.url}"\ntoken = "hf_ProjectOwnToken"\n', monkeypatch)
    fake_hub.require_token = "hf_ProjectOwnToken"
    own = fetch(fake_hub, tmp_path / "a", env={"HF_TOKEN": ""})  # the file's token for the file's endpoint
    assert own.exit_code == 0 and all(authed(fake_hub)), own.output
    (repo / "gptoss.toml").unlink()
    user = Path(os.environ["XDG_CONFIG_HOME"]) / "gptoss" / "config.toml"
    user.parent.mkdir(parents=True, exist_ok=True)
    user.write_text(f'[fetch]\nendpoint = "{fake_hub.url}"\n')
    fake_hub.require_token = TOKEN
    fake_hub.requests.clear()
    res = fetch(fake_hub, tmp_path / "b")
    assert res.exit_code == 0 and all(authed(fake_hub)) and "project file" not in res.stderr
    (repo / "gptoss.toml").write_text(f'[fetch]\nendpoint = "{fake_hub.url}"\n')
    fake_hub.requests.clear()
    chosen = runner.invoke(app, ["--config", str(repo / "gptoss.toml"), "fetch", "--no-code", "--model", "org/tiny",
                                 "--dest", str(tmp_path / "c")], env={"HF_TOKEN": TOKEN})
    assert chosen.exit_code == 0 and all(authed(fake_hub))  # --config names it: the user's choice
