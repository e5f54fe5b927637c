"""``gptoss fetch`` over SSH against a real sshd on 127.0.0.1: both URL forms, pins, --ssh-key, errors, the lock."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gptoss_cli.cli import app
from gptoss_cli.errors import GitError, UsageError
from gptoss_cli.fetch.git import SshOptions, fetch_code, ssh_env
from gptoss_cli.fetch.ssh import is_ssh_url, ssh_command, user_ssh_command
from gptoss_cli.lockfile import read_lock
from gptoss_cli.redact import public_git_url
from tests.git_fixtures import BareRepo, git, make_bare_repo
from tests.ssh_fixtures import SshServer, sshd  # noqa: F401 - fixture

runner = CliRunner()
pytestmark = pytest.mark.timeout(120)


@pytest.fixture(autouse=True)
def _no_user_ssh(monkeypatch: pytest.MonkeyPatch) -> None:
    """The developer's agent, GIT_SSH* and git config must not help or hinder these tests."""
    for name in ("GIT_SSH_COMMAND", "GIT_SSH", "SSH_AUTH_SOCK", "SSH_ASKPASS", "SSH_ASKPASS_REQUIRE", "DISPLAY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", os.devnull)


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> BareRepo:
    return make_bare_repo(tmp_path_factory.mktemp("ssh-remote"))


@pytest.fixture
def askpass(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An SSH_ASKPASS that ssh is forced to use if it ever asks anything; it leaves a marker when called."""
    marker = tmp_path / "asked"
    script = tmp_path / "askpass.sh"
    script.write_text(f"#!/bin/sh\necho \"$1\" >> {marker}\necho wrong\n")
    script.chmod(0o755)
    monkeypatch.setenv("SSH_ASKPASS", str(script))
    monkeypatch.setenv("SSH_ASKPASS_REQUIRE", "force")
    monkeypatch.setenv("DISPLAY", ":0")
    return marker


# -- units: URL forms, the ssh command, the stored URL


@pytest.mark.parametrize("url, ssh", [
    ("ssh://git@github.com/openai/gpt-oss.git", True), ("git+ssh://host/x", True), ("SSH://h:2222/x", True),
    ("git@github.com:openai/gpt-oss.git", True), ("alias:repo.git", True), ("[::1]:repo", True),
    ("https://github.com/openai/gpt-oss", False), ("file:///tmp/x", False), ("/abs/path", False),
    ("./a:b", False), ("C:/repo", False), ("C:\\repo", False), ("relative/x:y", False)])
def test_which_urls_are_ssh(url: str, ssh: bool) -> None:
    assert is_ssh_url(url) is ssh


def test_stored_url_keeps_the_user_but_never_a_password() -> None:
    assert public_git_url("ssh://git@host:2222/org/repo.git/") == "ssh://git@host:2222/org/repo.git"
    assert public_git_url("ssh://git:hunter2@host/org/repo.git") == "ssh://git@host/org/repo.git"
    assert public_git_url("git@github.com:openai/gpt-oss.git") == "git@github.com:openai/gpt-oss.git"
    assert public_git_url("https://u:tok@github.com/openai/gpt-oss?x=1") == "https://github.com/openai/gpt-oss"


def test_ssh_command_adds_batchmode_and_the_key(tmp_path: Path) -> None:
    assert ssh_command(None) == "ssh -o BatchMode=yes"
    key = tmp_path / "my keys" / "id"
    cmd = ssh_command("ssh -F '/x y/cfg'", key)
    assert cmd == f"ssh -F '/x y/cfg' -o BatchMode=yes -i '{key}' -o IdentitiesOnly=yes"
    assert "StrictHostKeyChecking" not in cmd
    with pytest.raises(UsageError, match="plink"):
        ssh_command("plink.exe -batch")
    assert user_ssh_command("ssh -v", "/usr/bin/ssh", "ssh -4") == "ssh -v"  # git's own order
    assert user_ssh_command(None, "/opt/my ssh", "ssh -4") == "'/opt/my ssh'"
    assert user_ssh_command(None, None, "ssh -4") == "ssh -4"


def test_ssh_env_for_ssh_and_other_urls(tmp_path: Path) -> None:
    import git

    batch = {"GIT_SSH_COMMAND": "ssh -o BatchMode=yes"}
    assert ssh_env(git, "git@github.com:openai/gpt-oss", None) == batch
    assert ssh_env(git, "https://github.com/openai/gpt-oss", SshOptions()) == batch  # an insteadOf may make it ssh
    with pytest.raises(UsageError, match="--ssh-key"):
        ssh_env(git, "git@github.com:openai/gpt-oss", SshOptions(key=tmp_path / "nope"))
    with pytest.raises(UsageError, match="plink"):
        ssh_env(git, "ssh://git@host/x", SshOptions(program="/opt/plink"))
    # not an SSH URL: a stale key setting or a plink setup is none of this fetch's business
    assert ssh_env(git, "https://github.com/openai/gpt-oss", SshOptions(key=tmp_path / "nope")) == {}
    assert ssh_env(git, "file:///tmp/x", SshOptions(command="plink -batch")) == {}


# -- a real sshd


def test_ssh_url_clone_pins_and_verifies_the_commit(tmp_path: Path, sshd: SshServer, repo: BareRepo) -> None:
    ssh = SshOptions(key=sshd.client_key, command=sshd.command())
    pinned = repo.commits[1]
    result = fetch_code(sshd.url(repo.path), tmp_path / "code", ref=pinned, ssh=ssh)
    assert result.commit == pinned and result.action == "cloned"
    assert git("rev-parse", "HEAD", cwd=tmp_path / "code") == pinned
    assert result.url == f"ssh://{sshd.user}@127.0.0.1:{sshd.port}{repo.path}"
    moved = fetch_code(sshd.url(repo.path), tmp_path / "code", ref="main", ssh=ssh)  # update over ssh
    assert moved.commit == repo.commits[-1] and moved.action == "updated"
    with pytest.raises(GitError):
        fetch_code(sshd.url(repo.path), tmp_path / "other", ref="f" * 40, ssh=ssh)
    assert not (tmp_path / "other").exists()


def test_scp_form_through_a_host_alias_uses_git_ssh_command(tmp_path: Path, sshd: SshServer,
                                                            repo: BareRepo) -> None:
    """No --ssh-key: the key comes only from the ssh config named in GIT_SSH_COMMAND."""
    result = fetch_code(sshd.scp_url(repo.path), tmp_path / "code", ref="v2.0",
                        ssh=SshOptions(command=sshd.command(sshd.config_with_key)))
    assert result.commit == repo.tag_v2 and result.url == sshd.scp_url(repo.path)
    with pytest.raises(GitError, match="permission denied"):  # the same alias without the key: refused
        fetch_code(sshd.scp_url(repo.path), tmp_path / "again", ssh=SshOptions(command=sshd.command()))


def test_core_sshcommand_from_git_config_is_honoured(tmp_path: Path, sshd: SshServer, repo: BareRepo,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GIT_CONFIG_COUNT", "1")
    monkeypatch.setenv("GIT_CONFIG_KEY_0", "core.sshCommand")
    monkeypatch.setenv("GIT_CONFIG_VALUE_0", sshd.command(sshd.config_with_key))
    result = fetch_code(sshd.scp_url(repo.path), tmp_path / "code")
    assert result.commit == repo.commits[-1]


def test_cli_ssh_key_lock_and_reuse(tmp_path: Path, sshd: SshServer, repo: BareRepo,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GIT_SSH_COMMAND", sshd.command())
    dest = tmp_path / "dest"
    res = runner.invoke(app, ["fetch", "--no-weights", "--repo-url", sshd.url(repo.path), "--ref", repo.commits[0],
                              "--ssh-key", str(sshd.client_key), "--dest", str(dest), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["code"]["commit"] == repo.commits[0]
    lock = read_lock(dest)
    assert lock.code is not None and lock.code.url == sshd.url(repo.path) and lock.code.commit == repo.commits[0]
    # the lock's URL is usable as it is: a second DEST from --lock alone, key from the environment this time
    monkeypatch.setenv("GPTOSS_FETCH_SSH_KEY", str(sshd.client_key))
    again = tmp_path / "again"
    res = runner.invoke(app, ["fetch", "--no-weights", "--lock", str(dest / "gptoss.lock.json"),
                              "--dest", str(again)])
    assert res.exit_code == 0, res.output
    assert git("rev-parse", "HEAD", cwd=again / "code") == repo.commits[0]


def test_ssh_key_from_the_config_file(tmp_path: Path, sshd: SshServer, repo: BareRepo,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GIT_SSH_COMMAND", sshd.command())
    cfg = tmp_path / "my.toml"
    cfg.write_text(f'[fetch]\nssh_key = "{sshd.client_key}"\n')
    res = runner.invoke(app, ["--config", str(cfg), "fetch", "--no-weights", "--repo-url",
                              sshd.scp_url(repo.path), "--dest", str(tmp_path / "d")])
    assert res.exit_code == 0, res.output
    assert read_lock(tmp_path / "d").code.commit == repo.commits[-1]


def _fails(args: list[str], tmp_path: Path) -> str:
    res = runner.invoke(app, ["fetch", "--no-weights", *args, "--dest", str(tmp_path / "d")])
    assert res.exit_code == 3, res.output
    assert not (tmp_path / "d").exists()
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    return lines[0]


def test_unknown_host_key_fails_in_one_line_without_asking(tmp_path: Path, sshd: SshServer, repo: BareRepo,
                                                           monkeypatch: pytest.MonkeyPatch, askpass: Path) -> None:
    monkeypatch.setenv("GIT_SSH_COMMAND", f"{sshd.command()} -o UserKnownHostsFile={sshd.empty_known_hosts}")
    line = _fails(["--repo-url", sshd.url(repo.path), "--ssh-key", str(sshd.client_key)], tmp_path)
    assert f"host key of {sshd.user}@127.0.0.1:{sshd.port} is not known" in line and "known_hosts" in line
    assert f"ssh-keyscan -p {sshd.port} 127.0.0.1" in line
    assert not askpass.exists()  # BatchMode: ssh did not ask whether to trust the key


def test_wrong_key_is_permission_denied(tmp_path: Path, sshd: SshServer, repo: BareRepo,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GIT_SSH_COMMAND", sshd.command())
    line = _fails(["--repo-url", sshd.url(repo.path), "--ssh-key", str(sshd.other_key)], tmp_path)
    assert f"permission denied for {sshd.user}@127.0.0.1:{sshd.port} with the key {sshd.other_key}" in line
    assert "--ssh-key" in line and "check the user name" in line


def test_passphrase_key_never_prompts(tmp_path: Path, sshd: SshServer, repo: BareRepo,
                                      monkeypatch: pytest.MonkeyPatch, askpass: Path) -> None:
    monkeypatch.setenv("GIT_SSH_COMMAND", sshd.command())
    line = _fails(["--repo-url", sshd.url(repo.path), "--ssh-key", str(sshd.locked_key)], tmp_path)
    assert "permission denied" in line and "ssh-agent" in line
    assert not askpass.exists()  # the passphrase was never asked for


def test_no_such_repo(tmp_path: Path, sshd: SshServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GIT_SSH_COMMAND", sshd.command())
    line = _fails(["--repo-url", sshd.url(tmp_path / "missing.git"), "--ssh-key", str(sshd.client_key)], tmp_path)
    assert "no git repository there" in line and "check the path in --repo-url" in line


def test_nothing_listening(tmp_path: Path, sshd: SshServer, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.ports import free_port

    monkeypatch.setenv("GIT_SSH_COMMAND", sshd.command())
    line = _fails(["--repo-url", f"ssh://{sshd.user}@127.0.0.1:{free_port()}/x.git"], tmp_path)
    assert "Connection refused" in line and "reachable" in line


def test_a_password_in_an_ssh_url_is_refused_without_showing_it(tmp_path: Path) -> None:
    for extra in ([], ["--json"]):
        res = runner.invoke(app, ["fetch", *extra, "--no-weights", "--repo-url",
                                  "ssh://git:hunter2@127.0.0.1:1/x.git", "--dest", str(tmp_path / "d")])
        assert res.exit_code == 2, res.output
        assert "hunter2" not in res.output + res.stderr and "cannot carry a password" in res.output + res.stderr
        assert "ssh://git@127.0.0.1:1/x.git" in res.output + res.stderr
        assert not (tmp_path / "d").exists()


def test_missing_key_file_is_exit_2(tmp_path: Path) -> None:
    res = runner.invoke(app, ["fetch", "--no-weights", "--repo-url", "git@example.invalid:x.git", "--ssh-key",
                              str(tmp_path / "nope"), "--dest", str(tmp_path / "d")])
    assert res.exit_code == 2, res.output
    assert "--ssh-key" in res.stderr and not (tmp_path / "d").exists()
