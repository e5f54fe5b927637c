"""gptoss verify: the core API (verify_lock) and the CLI (exit codes, --json, --strict, --lock)."""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gptoss_cli.cli import app
from gptoss_cli.lockfile import LOCK_NAME, Lock, LockedFile, LockError, ModelPin, write_lock
from gptoss_cli.verify import VerifyResult, hash_file, verify_lock

runner = CliRunner()


def make_dest(root: Path, files: dict[str, bytes]) -> Path:
    model = root / "model"
    entries = []
    for rel, data in files.items():
        (model / rel).parent.mkdir(parents=True, exist_ok=True)
        (model / rel).write_bytes(data)
        entries.append(LockedFile(rel, len(data), hashlib.sha256(data).hexdigest(), "lfs"))
    write_lock(root, Lock(code=None, model=ModelPin("hf", "org/m", "c" * 40, "https://huggingface.co"),
                          files=tuple(entries)))
    return root


FILES = {"config.json": b'{"a": 1}', "model-00000-of-00001.safetensors": bytes(range(256)) * 5000,
         "sub/tokenizer.json": b"{}" * 1000}


def test_all_ok_with_progress_by_bytes(tmp_path: Path) -> None:
    dest = make_dest(tmp_path, FILES)
    seen: list[tuple[int, int]] = []
    lock = threading.Lock()

    def progress(done: int, total: int) -> None:
        with lock:
            seen.append((done, total))

    result = verify_lock(dest, jobs=3, progress=progress)
    assert isinstance(result, VerifyResult) and result.ok
    assert [f.status for f in result.files] == ["ok", "ok", "ok"]
    total = sum(len(v) for v in FILES.values())
    assert result.bytes_hashed == total
    assert seen[-1] == (total, total) and all(t == total for _, t in seen)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    with pytest.raises(Exception):
        result.strict = True  # type: ignore[misc]  # frozen


def test_mismatch_missing_extra_and_strict(tmp_path: Path) -> None:
    dest = make_dest(tmp_path, FILES)
    model = dest / "model"
    (model / "config.json").write_bytes(b'{"a": 2}')  # same size, other bytes
    (model / "sub/tokenizer.json").unlink()
    (model / "stray.txt").write_text("x")
    result = verify_lock(dest / LOCK_NAME, jobs=2)
    status = {f.path: f.status for f in result.files}
    assert status == {"config.json": "mismatch", "model-00000-of-00001.safetensors": "ok",
                      "sub/tokenizer.json": "missing"}
    assert result.extra == ("stray.txt",) and not result.ok
    bad = next(f for f in result.files if f.path == "config.json")
    assert bad.actual_sha256 == hashlib.sha256(b'{"a": 2}').hexdigest()
    # extra alone: ok unless strict
    dest2 = make_dest(tmp_path / "two", FILES)
    (dest2 / "model" / "stray.txt").write_text("x")
    assert verify_lock(dest2).ok
    assert not verify_lock(dest2, strict=True).ok


def test_size_mismatch_is_detected_without_hashing(tmp_path: Path) -> None:
    dest = make_dest(tmp_path, FILES)
    (dest / "model" / "config.json").write_bytes(b"{}")
    result = verify_lock(dest, jobs=1)
    bad = next(f for f in result.files if f.path == "config.json")
    assert bad.status == "mismatch" and bad.actual_size == 2 and bad.actual_sha256 is None


def test_lock_errors_raise_lock_error(tmp_path: Path) -> None:
    with pytest.raises(LockError):
        verify_lock(tmp_path)


def test_hash_file_matches_hashlib(tmp_path: Path) -> None:
    data = bytes(range(256)) * 10000 + b"tail"
    (tmp_path / "f").write_bytes(data)
    sha, git, n = hash_file(tmp_path / "f", git_blob=True, buffer=bytearray(4096))
    assert sha == hashlib.sha256(data).hexdigest() and n == len(data)
    assert git == hashlib.sha1(b"blob %d\x00" % len(data) + data).hexdigest()
    assert hash_file(tmp_path / "f", limit=10)[0] == hashlib.sha256(data[:10]).hexdigest()


# -- CLI ---------------------------------------------------------------------------------------------------------------


def test_cli_ok_exit_0_and_json(tmp_path: Path) -> None:
    dest = make_dest(tmp_path, FILES)
    res = runner.invoke(app, ["verify", str(dest)])
    assert res.exit_code == 0, res.output
    assert "all files match" in res.stdout
    res = runner.invoke(app, ["--json", "verify", str(dest)])
    doc = json.loads(res.stdout)
    assert doc["ok"] is True and doc["counts"] == {"ok": 3, "mismatch": 0, "missing": 0, "extra": 0}
    assert {f["path"] for f in doc["files"]} == set(FILES)


def test_cli_mismatch_exit_1_with_json_per_file(tmp_path: Path) -> None:
    dest = make_dest(tmp_path, FILES)
    (dest / "model" / "config.json").write_bytes(b'{"a": 3}')
    (dest / "model" / "extra.bin").write_bytes(b"1")
    res = runner.invoke(app, ["verify", str(dest), "--json"])
    assert res.exit_code == 1
    doc = json.loads(res.stdout)
    by_path = {f["path"]: f["status"] for f in doc["files"]}
    assert by_path["config.json"] == "mismatch" and by_path["extra.bin"] == "extra"
    assert "verify failed" in res.stderr and len(res.stderr.strip().splitlines()) == 1


def test_cli_missing_exit_1_human(tmp_path: Path) -> None:
    dest = make_dest(tmp_path, FILES)
    (dest / "model" / "config.json").unlink()
    res = runner.invoke(app, ["verify", str(dest)])
    assert res.exit_code == 1 and "missing" in res.stdout


def test_cli_strict_extra_exit_1(tmp_path: Path) -> None:
    dest = make_dest(tmp_path, FILES)
    (dest / "model" / "notes.txt").write_text("hi")
    assert runner.invoke(app, ["verify", str(dest)]).exit_code == 0
    assert runner.invoke(app, ["verify", str(dest), "--strict"]).exit_code == 1


def test_cli_unreadable_lock_exit_3(tmp_path: Path) -> None:
    res = runner.invoke(app, ["verify", str(tmp_path)])
    assert res.exit_code == 3 and "not found" in res.stderr
    (tmp_path / LOCK_NAME).write_text("{broken")
    res = runner.invoke(app, ["verify", str(tmp_path)])
    assert res.exit_code == 3 and "not valid JSON" in res.stderr


def test_cli_lock_option_and_dest_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dest = make_dest(tmp_path / "d", FILES)
    pinned = tmp_path / "pinned.json"
    pinned.write_text((dest / LOCK_NAME).read_text())
    # --lock FILE with DEST: files from DEST/model
    assert runner.invoke(app, ["verify", str(dest), "--lock", str(pinned)]).exit_code == 0
    # --lock alone: files from model/ next to the lock (none there) → missing
    assert runner.invoke(app, ["verify", "--lock", str(pinned)]).exit_code == 1
    monkeypatch.setenv("GPTOSS_FETCH_DEST", str(dest))
    assert runner.invoke(app, ["verify", "-j", "2"]).exit_code == 0


def test_ctrl_c_stops_hashing_at_once(tmp_path: Path) -> None:
    """KeyboardInterrupt in the main thread (what Ctrl-C raises) must not wait for every queued file."""
    import os
    import signal

    size = 48 * 1024 * 1024  # a few big shards, as in gpt-oss: in-flight files must stop too, not only queued ones
    dest = make_dest(tmp_path, {f"model-{i:05d}.safetensors": bytes([i]) * size for i in range(3)})
    hashed: list[int] = []
    lock = threading.Lock()

    def progress(done: int, total: int) -> None:
        with lock:
            if not hashed:
                os.kill(os.getpid(), signal.SIGINT)  # a real Ctrl-C: the main thread gets KeyboardInterrupt
            hashed.append(done)

    with pytest.raises(KeyboardInterrupt):
        verify_lock(dest, jobs=2, progress=progress)
    assert max(hashed) < size // 2, f"{max(hashed)} bytes hashed after Ctrl-C"
