"""DEST: one writer at a time (real processes), symlinks that leave DEST refused, a failed run leaves no empty DEST."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gptoss_cli.cli import app
from gptoss_cli.dest import FLOCK_NAME, claim, reading
from gptoss_cli.lockfile import LOCK_NAME
from gptoss_cli.verify import verify_lock
from tests.git_fixtures import BareRepo, bare_repo  # noqa: F401 - fixture
from tests.hub_fixtures import FakeHub, FakeRepo, fake_hub, random_bytes  # noqa: F401 - fixture

runner = CliRunner()
SHARD = "model-00000-of-00001.safetensors"


def cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "gptoss_cli", *args]


def fetch_cmd(hub: FakeHub, dest: Path) -> list[str]:
    return cmd("fetch", "--no-code", "--endpoint", hub.url, "--model", "org/big", "--dest", str(dest))


def test_second_fetch_and_verify_refused_while_a_fetch_writes(tmp_path: Path) -> None:
    files = {"config.json": b'{"model_type": "gpt_oss"}\n', SHARD: random_bytes(3 * 1024 * 1024 + 5, 3)}
    dest = tmp_path / "dest"
    with FakeHub([FakeRepo.build("org/big", files)]) as hub:
        hub.pause_after[SHARD] = 1024 * 1024
        first = subprocess.Popen(fetch_cmd(hub, dest), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            assert hub.paused.wait(timeout=60), "the first fetch never reached the pause point"
            second = subprocess.run(fetch_cmd(hub, dest), capture_output=True, text=True, timeout=60)
            check = subprocess.run(cmd("verify", str(dest)), capture_output=True, text=True, timeout=60)
        finally:
            hub.release.set()
            _, first_err = first.communicate(timeout=60)
    assert second.returncode == 3, second.stderr
    assert f"pid {first.pid}" in second.stderr and "gptoss fetch" in second.stderr and "since" in second.stderr
    assert check.returncode == 3 and "being written" in check.stderr and f"pid {first.pid}" in check.stderr
    assert first.returncode == 0, first_err
    assert verify_lock(dest).ok  # the first run's model is whole: nothing wrote beside it


def test_from_dir_takes_the_lock_and_readers_share_it(tmp_path: Path, fake_hub: FakeHub) -> None:
    src = tmp_path / "src"
    ok = runner.invoke(app, ["fetch", "--no-code", "--endpoint", fake_hub.url, "--model", "org/tiny", "--dest",
                             str(src)])
    assert ok.exit_code == 0, ok.output
    dest = tmp_path / "dest"
    with claim(dest, "fetch"):
        res = runner.invoke(app, ["fetch", "--no-code", "--from-dir", str(src), "--dest", str(dest)])
        assert res.exit_code == 3 and f"pid {os.getpid()}" in res.stderr
        assert not (dest / "model").exists() and not (dest / LOCK_NAME).exists()
        busy = runner.invoke(app, ["verify", str(dest)])
        assert busy.exit_code == 3 and "being written" in busy.stderr
    with reading(src):
        assert runner.invoke(app, ["verify", str(src)]).exit_code == 0  # two readers at once are fine
        writer = runner.invoke(app, ["fetch", "--no-code", "--endpoint", fake_hub.url, "--model", "org/tiny",
                                     "--dest", str(src)])
        assert writer.exit_code == 3 and "in use" in writer.stderr
    assert runner.invoke(app, ["fetch", "--no-code", "--from-dir", str(src), "--dest", str(dest)]).exit_code == 0


def test_failed_clone_leaves_no_empty_dest_and_keeps_user_files(tmp_path: Path, fake_hub: FakeHub) -> None:
    missing_repo = (tmp_path / "no-such-repo").as_uri()
    new = tmp_path / "a" / "b" / "dest"
    res = runner.invoke(app, ["fetch", "--no-weights", "--repo-url", missing_repo, "--dest", str(new)])
    assert res.exit_code == 3 and "git clone" in res.stderr
    assert not (tmp_path / "a").exists()  # DEST and the parents this run created are gone
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    res = runner.invoke(app, ["fetch", "--no-weights", "--repo-url", missing_repo, "--dest", str(mine)])
    assert res.exit_code == 3
    assert sorted(p.name for p in mine.iterdir()) == ["notes.txt"]
    bad = runner.invoke(app, ["fetch", "--no-code", "--endpoint", fake_hub.url, "--model", "org/none", "--dest",
                              str(new)])
    assert bad.exit_code == 3 and not (tmp_path / "a").exists()


def _outside_copy(tmp_path: Path, src: Path) -> Path:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for p in (src / "model").iterdir():
        (elsewhere / p.name).write_bytes(p.read_bytes())
    return elsewhere


@pytest.mark.parametrize("link", ["file", "folder"])
def test_verify_refuses_symlinks_that_leave_dest(tmp_path: Path, fake_hub: FakeHub, link: str) -> None:
    dest = tmp_path / "dest"
    assert runner.invoke(app, ["fetch", "--no-code", "--endpoint", fake_hub.url, "--model", "org/tiny", "--dest",
                               str(dest)]).exit_code == 0
    elsewhere = _outside_copy(tmp_path, dest)
    if link == "file":
        (dest / "model" / "config.json").unlink()
        (dest / "model" / "config.json").symlink_to(elsewhere / "config.json")
    else:
        os.rename(dest / "model", tmp_path / "old-model")
        (dest / "model").symlink_to(elsewhere, target_is_directory=True)
    res = runner.invoke(app, ["verify", str(dest)])
    assert res.exit_code == 3, res.output
    assert "symlink" in res.stderr and "outside" in res.stderr


def test_fetch_never_writes_through_a_model_folder_symlink(tmp_path: Path, fake_hub: FakeHub) -> None:
    dest = tmp_path / "dest"
    assert runner.invoke(app, ["fetch", "--no-code", "--endpoint", fake_hub.url, "--model", "org/tiny", "--dest",
                               str(dest)]).exit_code == 0
    elsewhere = _outside_copy(tmp_path, dest)
    (elsewhere / "config.json").write_bytes(b"damaged, outside DEST")
    os.rename(dest / "model", tmp_path / "old-model")
    (dest / "model").symlink_to(elsewhere, target_is_directory=True)
    res = runner.invoke(app, ["fetch", "--no-code", "--endpoint", fake_hub.url, "--model", "org/tiny", "--dest",
                              str(dest)])
    assert res.exit_code == 3 and "symlink" in res.stderr
    assert (elsewhere / "config.json").read_bytes() == b"damaged, outside DEST"  # not "repaired"
    assert (dest / FLOCK_NAME).exists()  # DEST existed before: only what this run created is removed


def test_verify_writes_nothing_into_a_folder_fetch_never_wrote(tmp_path: Path, fake_hub: FakeHub) -> None:
    dest = tmp_path / "dest"
    assert runner.invoke(app, ["fetch", "--no-code", "--endpoint", fake_hub.url, "--model", "org/tiny", "--dest",
                               str(dest)]).exit_code == 0
    (dest / FLOCK_NAME).unlink()  # e.g. a model folder shipped or copied without it
    assert runner.invoke(app, ["verify", str(dest)]).exit_code == 0
    assert not (dest / FLOCK_NAME).exists()
