"""gptoss fetch (weights) against the loopback Hub: selection, lock, faults, trust, token, safety, disk, dry run."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gptoss_cli.cli import app
from gptoss_cli.lockfile import LOCK_NAME, read_lock
from gptoss_cli.verify import verify_lock
from tests.hub_fixtures import DEFAULT_SELECTION, FakeHub, fake_hub  # noqa: F401 - fixture

runner = CliRunner()
SHARD = "model-00000-of-00002.safetensors"
TOKEN = "hf_SuperSecretToken1234567890"


def fetch_cli(hub: FakeHub, dest: Path, *args: str, repo: str = "org/tiny"):
    return runner.invoke(app, ["fetch", "--no-code", "--endpoint", hub.url, "--model", repo, "--dest", str(dest),
                               *args])


def model_files(dest: Path) -> list[str]:
    root = dest / "model"
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_default_selection_real_files_lock_and_verify(tmp_path: Path, fake_hub: FakeHub) -> None:
    dest = tmp_path / "dest"
    res = fetch_cli(fake_hub, dest, "--json")
    assert res.exit_code == 0, res.output
    assert model_files(dest) == sorted(DEFAULT_SELECTION)  # no original/, metal/, README
    assert not any((dest / "model" / p).is_symlink() for p in DEFAULT_SELECTION)
    repo = fake_hub.repos["org/tiny"]
    for rel in DEFAULT_SELECTION:
        assert (dest / "model" / rel).read_bytes() == repo.files[rel].content
    lock = read_lock(dest)
    assert lock.model is not None and lock.model.commit == repo.commit and lock.model.endpoint == fake_hub.url
    sources = {f.path: f.hash_source for f in lock.files}
    assert sources[SHARD] == "lfs" and sources["config.json"] == "git-blob"
    assert all(f.sha256 == repo.files[f.path].sha256 for f in lock.files)
    doc = json.loads(res.stdout)
    assert doc["model"]["trust"] == "endpoint" and doc["lock_path"] == str(dest / LOCK_NAME)
    assert "Xet disabled" in res.stderr
    assert not (dest / ".gptoss-partial").exists()
    assert verify_lock(dest).ok


def test_rerun_is_present_without_downloads(tmp_path: Path, fake_hub: FakeHub) -> None:
    dest = tmp_path / "dest"
    assert fetch_cli(fake_hub, dest).exit_code == 0
    before = len(fake_hub.requests)
    res = fetch_cli(fake_hub, dest, "--json")
    assert res.exit_code == 0
    assert {f["action"] for f in json.loads(res.stdout)["model"]["files"]} == {"present"}
    assert not [r for r in fake_hub.requests[before:] if r.get("kind") == "resolve"]


def test_include_exclude_globs(tmp_path: Path, fake_hub: FakeHub) -> None:
    dest = tmp_path / "dest"
    res = fetch_cli(fake_hub, dest, "--include", "original/*", "--include", "config.json", "--exclude", "*.json")
    assert res.exit_code == 0, res.output
    assert model_files(dest) == ["original/model.safetensors"]


def test_dry_run_lists_and_writes_nothing(tmp_path: Path, fake_hub: FakeHub) -> None:
    dest = tmp_path / "dest"
    res = runner.invoke(app, ["--json", "fetch", "--endpoint", fake_hub.url, "--model", "org/tiny", "--dest",
                              str(dest), "--dry-run", "--repo-url", "https://github.com/openai/gpt-oss"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["dry_run"] is True and doc["lock_path"] is None
    files = doc["model"]["files"]
    assert sorted(f["path"] for f in files) == sorted(DEFAULT_SELECTION)
    assert {f["action"] for f in files} == {"download"}
    repo = fake_hub.repos["org/tiny"]
    assert doc["model"]["total_bytes"] == sum(repo.files[p].size for p in DEFAULT_SELECTION)
    assert doc["code_plan"]["url"] == "https://github.com/openai/gpt-oss"
    assert not dest.exists()
    assert not [r for r in fake_hub.requests if r.get("kind") == "resolve"]
    human = runner.invoke(app, ["fetch", "--no-code", "--endpoint", fake_hub.url, "--model", "org/tiny", "--dest",
                                str(dest), "--dry-run"])
    assert "total" in human.stdout and "dry run" in human.stdout


def test_connection_cut_resumes_with_range(tmp_path: Path, fake_hub: FakeHub) -> None:
    fake_hub.cut_after[SHARD] = 100_000
    res = fetch_cli(fake_hub, tmp_path / "dest")
    assert res.exit_code == 0, res.output
    gets = fake_hub.file_requests(SHARD)
    assert [g["range"] for g in gets] == [None, "bytes=100000-"]
    assert fake_hub.bytes_sent[SHARD] == fake_hub.repos["org/tiny"].files[SHARD].size  # nothing fetched twice


def test_range_ignored_restarts_cleanly(tmp_path: Path, fake_hub: FakeHub) -> None:
    fake_hub.cut_after[SHARD] = 100_000
    fake_hub.ignore_range = True
    dest = tmp_path / "dest"
    res = fetch_cli(fake_hub, dest)
    assert res.exit_code == 0, res.output
    size = fake_hub.repos["org/tiny"].files[SHARD].size
    assert fake_hub.bytes_sent[SHARD] == 100_000 + size
    assert "ignored the Range" in res.stderr
    assert verify_lock(dest).ok


def test_5xx_then_recovery(tmp_path: Path, fake_hub: FakeHub) -> None:
    fake_hub.fail_5xx[SHARD] = 2
    fake_hub.api_5xx = 1
    dest = tmp_path / "dest"
    res = fetch_cli(fake_hub, dest)
    assert res.exit_code == 0, res.output
    assert len(fake_hub.file_requests(SHARD)) == 3 and verify_lock(dest).ok


def test_wrong_bytes_retried_once_then_ok(tmp_path: Path, fake_hub: FakeHub) -> None:
    fake_hub.corrupt[SHARD] = 1
    dest = tmp_path / "dest"
    res = fetch_cli(fake_hub, dest)
    assert res.exit_code == 0, res.output
    assert len(fake_hub.file_requests(SHARD)) == 2 and "retrying once" in res.stderr
    assert verify_lock(dest).ok


@pytest.mark.parametrize("path, label", [(SHARD, "expected"), ("config.json", "git blob")])
def test_wrong_bytes_twice_exit_3_naming_hashes(tmp_path: Path, fake_hub: FakeHub, path: str, label: str) -> None:
    fake_hub.corrupt[path] = 2
    dest = tmp_path / "dest"
    res = fetch_cli(fake_hub, dest)
    assert res.exit_code == 3
    f = fake_hub.repos["org/tiny"].files[path]
    expected = f.sha256 if path == SHARD else f.oid
    assert path in res.stderr and expected in res.stderr and label in res.stderr
    assert not (dest / "model" / path).exists() and not (dest / LOCK_NAME).exists()


@pytest.mark.parametrize("bad", ["../evil.json", "/etc/evil.json", "a/../../evil.json", "a\\..\\evil.json"])
def test_traversal_paths_refused(tmp_path: Path, fake_hub: FakeHub, bad: str) -> None:
    fake_hub.extra_tree.append({"type": "file", "path": bad, "size": 3, "oid": "0" * 40})
    dest = tmp_path / "inner" / "dest"
    res = fetch_cli(fake_hub, dest, "--include", "*")
    assert res.exit_code == 3 and "refusing" in res.stderr
    assert not dest.exists() and not (tmp_path / "evil.json").exists() and not (tmp_path / "inner" / "evil.json").exists()


def test_symlink_escape_refused(tmp_path: Path, fake_hub: FakeHub) -> None:
    dest = tmp_path / "dest"
    (dest / "model").mkdir(parents=True)
    outside = tmp_path / "outside.json"
    outside.write_text("keep me")
    (dest / "model" / "config.json").symlink_to(outside)
    res = fetch_cli(fake_hub, dest)
    assert res.exit_code == 3 and "symlink" in res.stderr
    assert outside.read_text() == "keep me"


def test_xet_headers_ignored_plain_http(tmp_path: Path, fake_hub: FakeHub) -> None:
    fake_hub.xet = True
    dest = tmp_path / "dest"
    res = fetch_cli(fake_hub, dest)
    assert res.exit_code == 0, res.output
    assert "Xet disabled" in res.stderr
    assert not [r for r in fake_hub.requests if "xet" in r["path"]]
    assert verify_lock(dest).ok


def test_token_only_to_endpoint_origin_never_printed(tmp_path: Path, fake_hub: FakeHub) -> None:
    fake_hub.require_token = TOKEN
    fake_hub.redirect_lfs = True
    dest = tmp_path / "dest"
    denied = fetch_cli(fake_hub, dest)
    assert denied.exit_code == 3
    start = len(fake_hub.requests)
    res = runner.invoke(app, ["--json", "fetch", "--no-code", "--endpoint", fake_hub.url, "--model", "org/tiny",
                              "--dest", str(dest)], env={"HF_TOKEN": TOKEN})
    assert res.exit_code == 0, res.output
    seen = fake_hub.requests[start:]
    cdn = [r for r in seen if r.get("kind") == "cdn"]
    assert cdn and not any(r["auth"] for r in cdn)  # the CDN (another origin) never saw the token
    home = [r for r in seen if r.get("kind") in ("info", "tree", "resolve")]
    assert home and all(r["auth"] for r in home)
    for text in (res.stdout, res.stderr, denied.stdout, denied.stderr, (dest / LOCK_NAME).read_text()):
        assert TOKEN not in text


def test_pickle_refused_unless_allowed(tmp_path: Path, fake_hub: FakeHub) -> None:
    res = fetch_cli(fake_hub, tmp_path / "a", "--include", "metal/*")
    assert res.exit_code == 2 and "--allow-pickle" in res.stderr and "metal/model.bin" in res.stderr
    ok = fetch_cli(fake_hub, tmp_path / "b", "--include", "metal/*", "--allow-pickle")
    assert ok.exit_code == 0, ok.output
    assert model_files(tmp_path / "b") == ["metal/model.bin"]


def test_not_enough_disk_exit_3(tmp_path: Path, fake_hub: FakeHub, monkeypatch: pytest.MonkeyPatch) -> None:
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr("gptoss_cli.fetch.plan.shutil.disk_usage", lambda p: usage(10**9, 10**9 - 1000, 1000))
    res = fetch_cli(fake_hub, tmp_path / "dest")
    assert res.exit_code == 3 and "need" in res.stderr and "1000 free" in res.stderr
    assert not [r for r in fake_hub.requests if r.get("kind") == "resolve"]
    assert not (tmp_path / "dest").exists()


def test_pinned_lock_is_enforced(tmp_path: Path, fake_hub: FakeHub) -> None:
    first = tmp_path / "first"
    assert fetch_cli(fake_hub, first).exit_code == 0
    pinned = tmp_path / "team.lock.json"
    pinned.write_text((first / LOCK_NAME).read_text())
    # another machine, defaults: model and commit come from the lock
    res = runner.invoke(app, ["--json", "fetch", "--no-code", "--endpoint", fake_hub.url, "--dest",
                              str(tmp_path / "second"), "--lock", str(pinned)])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["model"]["trust"] == "lock"
    assert read_lock(tmp_path / "second").files == read_lock(first).files
    # the lock says other bytes than the endpoint's LFS metadata → refused before downloading
    data = json.loads(pinned.read_text())
    entry = next(f for f in data["files"] if f["path"] == SHARD)
    entry["sha256"] = hashlib.sha256(b"other").hexdigest()
    pinned.write_text(json.dumps(data))
    res = fetch_cli(fake_hub, tmp_path / "third", "--lock", str(pinned))
    assert res.exit_code == 3 and "mirror serves different content than the lock" in res.stderr
    # a small (git-blob) file whose bytes differ from the lock: caught by the streaming hash
    data = json.loads((first / LOCK_NAME).read_text())
    entry = next(f for f in data["files"] if f["path"] == "config.json")
    entry["sha256"] = hashlib.sha256(b"other").hexdigest()
    pinned.write_text(json.dumps(data))
    res = fetch_cli(fake_hub, tmp_path / "fourth", "--lock", str(pinned))
    assert res.exit_code == 3 and "config.json" in res.stderr and "hash mismatch" in res.stderr


@pytest.mark.parametrize("args, needle", [(["--model", "org/none"], "not found"),
                                          (["--revision", "nope"], "revision 'nope' not found")])
def test_unknown_repo_or_revision_exit_3(tmp_path: Path, fake_hub: FakeHub, args: list[str], needle: str) -> None:
    res = runner.invoke(app, ["fetch", "--no-code", "--endpoint", fake_hub.url, "--model", "org/tiny", "--dest",
                              str(tmp_path / "d"), *args])
    assert res.exit_code == 3 and needle in res.stderr


def test_unreachable_endpoint_exit_3(tmp_path: Path) -> None:
    from gptoss_cli.errors import NetworkError
    from gptoss_cli.fetch import FetchOptions, Hooks, WeightsSpec, fetch

    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    opts = FetchOptions(dest=tmp_path / "d", code=None,
                        weights=WeightsSpec(repo_id="org/tiny", endpoint=f"http://127.0.0.1:{port}"))
    with pytest.raises(NetworkError, match="cannot reach"):
        fetch(opts, Hooks(retry_wait=0.0))


def test_usage_errors_exit_2(tmp_path: Path, fake_hub: FakeHub) -> None:
    assert runner.invoke(app, ["fetch", "--no-code", "--no-weights"]).exit_code == 2
    assert runner.invoke(app, ["fetch", "--source", "ftp", "--no-code"]).exit_code == 2
    assert fetch_cli(fake_hub, tmp_path / "d", "--include", "nothing-matches-*").exit_code == 2


def test_real_huggingface_hub_client_accepts_the_fake(tmp_path: Path, fake_hub: FakeHub) -> None:
    from huggingface_hub import snapshot_download

    fake_hub.redirect_lfs = True
    out = snapshot_download("org/tiny", endpoint=fake_hub.url, local_dir=tmp_path / "hf", token=False)
    assert (Path(out) / SHARD).read_bytes() == fake_hub.repos["org/tiny"].files[SHARD].content
    assert [r for r in fake_hub.requests if r.get("kind") == "cdn"]


def test_cli_modules_stay_light() -> None:
    code = ("import sys, gptoss_cli.cli.fetch, gptoss_cli.cli.verify, gptoss_cli.fetch, gptoss_cli.verify; "
            "heavy = [m for m in ('huggingface_hub', 'git', 'torch') if m in sys.modules]; "
            "assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60, env={**os.environ})


def test_endpoint_credentials_never_stored_or_printed(tmp_path: Path, fake_hub: FakeHub) -> None:
    endpoint = f"http://mirroruser:mirrorpass@127.0.0.1:{fake_hub.port}"
    dest = tmp_path / "dest"
    res = runner.invoke(app, ["--json", "fetch", "--no-code", "--endpoint", endpoint, "--model", "org/tiny",
                              "--dest", str(dest)])
    assert res.exit_code == 0, res.output
    assert read_lock(dest).model.endpoint == fake_hub.url  # type: ignore[union-attr]
    for text in (res.stdout, res.stderr, (dest / LOCK_NAME).read_text()):
        assert "mirrorpass" not in text


def test_changed_small_file_of_same_size_is_fetched_again(tmp_path: Path, fake_hub: FakeHub) -> None:
    from tests.hub_fixtures import tiny_model_files

    dest = tmp_path / "dest"
    assert fetch_cli(fake_hub, dest).exit_code == 0
    files = tiny_model_files()
    files["config.json"] = files["config.json"].replace(b"2", b"3")  # same length, other bytes
    fake_hub.repos["org/tiny"].set_files(files)
    res = fetch_cli(fake_hub, dest, "--json")
    assert res.exit_code == 0, res.output
    actions = {f["path"]: f["action"] for f in json.loads(res.stdout)["model"]["files"]}
    assert actions["config.json"] == "downloaded" and actions[SHARD] == "present"
    assert (dest / "model" / "config.json").read_bytes() == files["config.json"]
    assert verify_lock(dest).ok


def test_rerun_repairs_a_corrupt_shard_of_the_right_size(tmp_path: Path, fake_hub: FakeHub) -> None:
    """`gptoss verify` says "rerun gptoss fetch to repair": the rerun must re-check, not trust DEST's own lock."""
    dest = tmp_path / "dest"
    assert fetch_cli(fake_hub, dest).exit_code == 0
    shard = dest / "model" / SHARD
    data = bytearray(shard.read_bytes())
    data[100] ^= 0xFF  # bit rot: same size, other bytes
    shard.write_bytes(bytes(data))
    assert not verify_lock(dest).ok
    res = fetch_cli(fake_hub, dest, "--json")
    assert res.exit_code == 0, res.output
    actions = {f["path"]: f["action"] for f in json.loads(res.stdout)["model"]["files"]}
    assert actions[SHARD] == "downloaded" and actions["config.json"] == "present"
    assert shard.read_bytes() == fake_hub.repos["org/tiny"].files[SHARD].content
    assert verify_lock(dest).ok


def test_duplicate_tree_entries_refused(tmp_path: Path, fake_hub: FakeHub) -> None:
    repo = fake_hub.repos["org/tiny"]
    cfg = repo.files["config.json"]
    fake_hub.extra_tree.append({"type": "file", "path": "config.json", "size": cfg.size, "oid": cfg.oid})
    dest = tmp_path / "dest"
    res = fetch_cli(fake_hub, dest)
    assert res.exit_code == 3 and "config.json" in res.stderr and "twice" in res.stderr, res.output
    assert not (dest / LOCK_NAME).exists()
