"""The code half of gptoss fetch against a real bare repo over file:// (shallow, tags, pins, mirror, failures)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gptoss_cli.cli import app
from gptoss_cli.errors import GitError
from gptoss_cli.fetch.git import fetch_code, git_env, mirrored_url
from gptoss_cli.lockfile import read_lock
from tests.git_fixtures import BareRepo, bare_repo, git, make_bare_repo  # noqa: F401 - fixture

runner = CliRunner()


def commit_count(path: Path) -> int:
    return int(git("rev-list", "--count", "HEAD", cwd=path))


def test_default_branch_is_shallow(tmp_path: Path, bare_repo: BareRepo) -> None:
    stages: list[str] = []
    out = tmp_path / "out"
    result = fetch_code(bare_repo.url, out / "code", progress=lambda s, c, m: stages.append(s))
    assert result.commit == bare_repo.commits[-1] and result.action == "cloned"
    assert (out / "code" / ".git" / "shallow").is_file()
    assert commit_count(out / "code") == 1
    assert stages  # git reported progress through the adapter
    assert [p.name for p in out.iterdir()] == ["code"]  # no temp folder left behind


@pytest.mark.parametrize("tag, index", [("v1.0", 0), ("v2.0", 1)])
def test_tag_checkout(tmp_path: Path, bare_repo: BareRepo, tag: str, index: int) -> None:
    result = fetch_code(bare_repo.url, tmp_path / "code", ref=tag)
    assert result.commit == bare_repo.commits[index]
    assert (tmp_path / "code" / "README.md").read_text() == f"gpt-oss code, version {index}\n"


def test_commit_pin_fetches_that_sha_and_checks_head(tmp_path: Path, bare_repo: BareRepo) -> None:
    sha = bare_repo.commits[1]
    result = fetch_code(bare_repo.url, tmp_path / "code", ref=sha)
    assert result.commit == sha
    assert git("rev-parse", "HEAD", cwd=tmp_path / "code") == sha
    assert commit_count(tmp_path / "code") == 1


def test_unknown_commit_fails_without_half_dir(tmp_path: Path, bare_repo: BareRepo) -> None:
    out = tmp_path / "out"
    with pytest.raises(GitError):
        fetch_code(bare_repo.url, out / "code", ref="f" * 40)
    assert list(out.iterdir()) == []


def test_bad_url_and_bad_branch_fail_cleanly(tmp_path: Path, bare_repo: BareRepo) -> None:
    out = tmp_path / "out"
    with pytest.raises(GitError) as err:
        fetch_code((tmp_path / "nope").as_uri(), out / "code")
    assert "fatal" in str(err.value) and err.value.exit_code == 3
    with pytest.raises(GitError):
        fetch_code(bare_repo.url, out / "code", ref="no-such-branch")
    assert list(out.iterdir()) == []


def test_existing_checkout_is_updated_and_dirty_refused(tmp_path: Path, bare_repo: BareRepo) -> None:
    code = tmp_path / "code"
    fetch_code(bare_repo.url, code, ref="v1.0")
    again = fetch_code(bare_repo.url, code, ref=bare_repo.commits[0])
    assert again.action == "present"
    moved = fetch_code(bare_repo.url, code, ref="main")
    assert moved.commit == bare_repo.commits[-1] and moved.action == "updated"
    (code / "README.md").write_text("local edit\n")
    with pytest.raises(GitError, match="local changes"):
        fetch_code(bare_repo.url, code, ref="v1.0")
    (tmp_path / "plain").mkdir()
    with pytest.raises(GitError, match="not a git checkout"):
        fetch_code(bare_repo.url, tmp_path / "plain")


def test_mirror_via_insteadof_env_keeps_github_origin(tmp_path: Path) -> None:
    mirror_root = tmp_path / "mirror"
    repo = make_bare_repo(mirror_root / "openai", name="gpt-oss")
    mirror = mirror_root.as_uri() + "/"
    result = fetch_code("https://github.com/openai/gpt-oss", tmp_path / "code", mirror=mirror)
    assert result.commit == repo.commits[-1]
    assert git("remote", "get-url", "origin", cwd=tmp_path / "code") == "https://github.com/openai/gpt-oss"
    assert mirrored_url("https://github.com/openai/gpt-oss", mirror) == f"{mirror}openai/gpt-oss"
    env = git_env(mirror)
    assert env["GIT_TERMINAL_PROMPT"] == "0" and env["GIT_CONFIG_KEY_0"] == f"url.{mirror}.insteadOf"


def test_cli_no_weights_writes_code_pin(tmp_path: Path, bare_repo: BareRepo) -> None:
    dest = tmp_path / "dest"
    res = runner.invoke(app, ["fetch", "--no-weights", "--repo-url", bare_repo.url, "--ref", "v2.0",
                              "--dest", str(dest), "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["code"]["commit"] == bare_repo.tag_v2
    lock = read_lock(dest)
    assert lock.code is not None and lock.code.commit == bare_repo.tag_v2 and lock.model is None
    assert lock.code.url == bare_repo.url


def test_cli_git_failure_exit_3(tmp_path: Path) -> None:
    res = runner.invoke(app, ["fetch", "--no-weights", "--repo-url", (tmp_path / "missing").as_uri(),
                              "--dest", str(tmp_path / "d")])
    assert res.exit_code == 3, res.output
    assert "git clone" in res.stderr and not (tmp_path / "d" / "code").exists()


def test_code_folder_gets_the_usual_mode(tmp_path: Path, bare_repo: BareRepo) -> None:
    """A team shares DEST: code/ follows the umask like model/, not the 0700 of a private temp folder."""
    import os

    old = os.umask(0o022)
    try:
        fetch_code(bare_repo.url, tmp_path / "code")
    finally:
        os.umask(old)
    assert (tmp_path / "code").stat().st_mode & 0o777 == 0o755
