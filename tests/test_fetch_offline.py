"""--from-dir: import an offline copy (hard link or copy) checked against --lock or the copy's own lock."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from typer.testing import CliRunner

from gptoss_cli.cli import app
from gptoss_cli.lockfile import LOCK_NAME, read_lock
from gptoss_cli.verify import verify_lock
from tests.git_fixtures import BareRepo, bare_repo, git  # noqa: F401 - fixture
from tests.hub_fixtures import FakeHub, fake_hub  # noqa: F401 - fixture

runner = CliRunner()
SHARD = "model-00000-of-00002.safetensors"


def online(hub: FakeHub, dest: Path, repo: BareRepo) -> None:
    res = runner.invoke(app, ["fetch", "--endpoint", hub.url, "--model", "org/tiny", "--dest", str(dest),
                              "--repo-url", repo.url, "--ref", repo.commits[1]])
    assert res.exit_code == 0, res.output


def test_from_gptoss_dest_links_files_and_clones_code(tmp_path: Path, fake_hub: FakeHub, bare_repo: BareRepo) -> None:
    usb = tmp_path / "usb"
    online(fake_hub, usb, bare_repo)
    requests_before = len(fake_hub.requests)
    dest = tmp_path / "dest"
    res = runner.invoke(app, ["--json", "fetch", "--from-dir", str(usb), "--dest", str(dest),
                              "--endpoint", "http://127.0.0.1:9"])
    assert res.exit_code == 0, res.output
    assert len(fake_hub.requests) == requests_before  # nothing went to the network
    doc = json.loads(res.stdout)
    assert {f["action"] for f in doc["model"]["files"]} == {"linked"}  # same filesystem: hard links
    assert (dest / "model" / SHARD).stat().st_ino == (usb / "model" / SHARD).stat().st_ino
    assert read_lock(dest).files == read_lock(usb).files
    assert read_lock(dest).code == read_lock(usb).code  # upstream URL and pinned commit kept
    assert git("rev-parse", "HEAD", cwd=dest / "code") == bare_repo.commits[1]
    assert verify_lock(dest).ok


def test_plain_folder_needs_lock_and_corruption_is_refused(tmp_path: Path, fake_hub: FakeHub) -> None:
    src = tmp_path / "src"
    res = runner.invoke(app, ["fetch", "--no-code", "--endpoint", fake_hub.url, "--model", "org/tiny", "--dest",
                              str(src)])
    assert res.exit_code == 0
    share = tmp_path / "share"
    shutil.copytree(src / "model", share)  # a bare folder of files, no lock
    no_lock = runner.invoke(app, ["fetch", "--no-code", "--from-dir", str(share), "--dest", str(tmp_path / "a")])
    assert no_lock.exit_code == 2 and "--lock" in no_lock.stderr
    ok = runner.invoke(app, ["fetch", "--no-code", "--from-dir", str(share), "--dest", str(tmp_path / "b"),
                             "--lock", str(src / LOCK_NAME)])
    assert ok.exit_code == 0, ok.output
    assert verify_lock(tmp_path / "b").ok
    data = bytearray((share / SHARD).read_bytes())
    data[100] ^= 1
    (share / SHARD).write_bytes(bytes(data))
    bad = runner.invoke(app, ["fetch", "--no-code", "--from-dir", str(share), "--dest", str(tmp_path / "c"),
                              "--lock", str(src / LOCK_NAME)])
    assert bad.exit_code == 3 and SHARD in bad.stderr and "does not match the lock" in bad.stderr
    assert not (tmp_path / "c" / "model" / SHARD).exists()
    (share / "config.json").unlink()
    missing = runner.invoke(app, ["fetch", "--no-code", "--from-dir", str(share), "--dest", str(tmp_path / "e"),
                                  "--lock", str(src / LOCK_NAME), "--include", "config.json"])
    assert missing.exit_code == 3 and "missing" in missing.stderr


def test_from_dir_dry_run_writes_nothing(tmp_path: Path, fake_hub: FakeHub) -> None:
    src = tmp_path / "src"
    assert runner.invoke(app, ["fetch", "--no-code", "--endpoint", fake_hub.url, "--model", "org/tiny", "--dest",
                               str(src)]).exit_code == 0
    res = runner.invoke(app, ["--json", "fetch", "--from-dir", str(src), "--dest", str(tmp_path / "d"),
                              "--dry-run"])
    assert res.exit_code == 0, res.output
    assert {f["action"] for f in json.loads(res.stdout)["model"]["files"]} == {"link"}
    assert not (tmp_path / "d").exists()


def test_no_weights_keeps_the_model_part_of_an_existing_lock(tmp_path: Path, fake_hub: FakeHub,
                                                               bare_repo: BareRepo) -> None:
    dest = tmp_path / "dest"
    assert runner.invoke(app, ["fetch", "--no-code", "--endpoint", fake_hub.url, "--model", "org/tiny", "--dest",
                               str(dest)]).exit_code == 0
    files_before = read_lock(dest).files
    res = runner.invoke(app, ["fetch", "--no-weights", "--repo-url", bare_repo.url, "--dest", str(dest)])
    assert res.exit_code == 0, res.output
    lock = read_lock(dest)
    assert lock.files == files_before and lock.model is not None
    assert lock.code is not None and lock.code.commit == bare_repo.commits[-1]


def test_ctrl_c_stops_an_import_at_once(tmp_path: Path) -> None:
    """KeyboardInterrupt (Ctrl-C) while importing big shards: running hashes/copies stop, nothing half-placed."""
    import os
    import signal
    import hashlib
    import threading

    import pytest

    from gptoss_cli.fetch.offline import import_from_dir
    from gptoss_cli.lockfile import Lock, LockedFile, ModelPin
    from gptoss_cli.verify import ByteCounter

    size = 48 * 1024 * 1024
    src = tmp_path / "usb"
    src.mkdir()
    entries = []
    for i in range(3):
        data = bytes([i]) * size
        (src / f"model-{i}.safetensors").write_bytes(data)
        entries.append(LockedFile(f"model-{i}.safetensors", size, hashlib.sha256(data).hexdigest(), "lfs"))
    lock = Lock(code=None, model=ModelPin("hf", "org/m", "c" * 40, "https://huggingface.co"), files=tuple(entries))
    seen: list[int] = []
    guard = threading.Lock()

    def progress(done: int, total: int) -> None:
        with guard:
            if not seen:
                os.kill(os.getpid(), signal.SIGINT)
            seen.append(done)

    with pytest.raises(KeyboardInterrupt):
        import_from_dir(src, lock, tmp_path / "model", jobs=2, counter=ByteCounter(3 * size, progress))
    for thread in threading.enumerate():  # a worker whose start() the interrupt cut short is not joined by the pool
        if thread is not threading.current_thread() and thread.name.startswith("ThreadPoolExecutor"):
            thread.join(timeout=10)
    assert max(seen) < size // 2, f"{max(seen)} bytes read after Ctrl-C"
    assert not (tmp_path / "model").exists()  # nothing placed, not even the folder
    assert not (tmp_path / ".gptoss-partial").exists()  # no staged link or copy left behind


def test_copy_when_hard_links_are_impossible(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    """Another filesystem (EXDEV): the file is copied and hashed in the same read; a bad copy is refused."""
    import errno
    import hashlib
    import os

    import pytest

    from gptoss_cli.errors import IntegrityError
    from gptoss_cli.fetch.offline import import_from_dir
    from gptoss_cli.lockfile import Lock, LockedFile, ModelPin

    def no_link(src: object, dst: object) -> None:
        raise OSError(errno.EXDEV, "cross-device link")

    monkeypatch.setattr("gptoss_cli.fetch.offline.os.link", no_link)
    data = os.urandom(3 * 1024 * 1024 + 7)
    (tmp_path / "usb").mkdir()
    (tmp_path / "usb" / SHARD).write_bytes(data)
    pin = ModelPin("hf", "org/m", "c" * 40, "https://huggingface.co")
    good = Lock(code=None, model=pin, files=(LockedFile(SHARD, len(data), hashlib.sha256(data).hexdigest(), "lfs"),))
    [outcome] = import_from_dir(tmp_path / "usb", good, tmp_path / "model")
    assert outcome.action == "copied" and (tmp_path / "model" / SHARD).read_bytes() == data
    bad = Lock(code=None, model=pin, files=(LockedFile(SHARD, len(data), "0" * 64, "lfs"),))
    with pytest.raises(IntegrityError, match="does not match the lock"):
        import_from_dir(tmp_path / "usb", bad, tmp_path / "other")
    assert not (tmp_path / "other").exists() and not (tmp_path / ".gptoss-partial").exists()


def test_a_refused_import_changes_nothing_in_model_or_the_lock(tmp_path: Path, fake_hub: FakeHub) -> None:
    """The shard (imported first: biggest first) matches, config.json does not: the shard must not land either."""
    src, dest = tmp_path / "src", tmp_path / "dest"
    for where in (src, dest):
        assert runner.invoke(app, ["fetch", "--no-code", "--endpoint", fake_hub.url, "--model", "org/tiny",
                                   "--dest", str(where)]).exit_code == 0
    (dest / "model" / SHARD).unlink()
    before = {p.name: (p.stat().st_ino, p.read_bytes()) for p in (dest / "model").iterdir()}
    lock_before = (dest / LOCK_NAME).read_text()
    config = src / "model" / "config.json"
    config.write_bytes(config.read_bytes().replace(b"{", b"[", 1))
    res = runner.invoke(app, ["fetch", "--no-code", "--from-dir", str(src), "--dest", str(dest)])
    assert res.exit_code == 3 and "config.json" in res.stderr and "does not match the lock" in res.stderr
    assert {p.name: (p.stat().st_ino, p.read_bytes()) for p in (dest / "model").iterdir()} == before
    assert (dest / LOCK_NAME).read_text() == lock_before
    assert not (dest / ".gptoss-partial").exists()
