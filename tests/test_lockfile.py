"""gptoss.lock.json: round trip, stable formatting, atomic write, strict validation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gptoss_cli import __version__
from gptoss_cli.lockfile import (LOCK_NAME, SCHEMA_VERSION, CodePin, Lock, LockedFile, LockError, ModelPin,
                                 check_relpath, lock_from_dict, public_url, read_lock, write_lock)

SHA_A = "a" * 64
SHA_B = "b" * 64


def sample_lock() -> Lock:
    return Lock(
        code=CodePin("https://github.com/openai/gpt-oss", "1" * 40),
        model=ModelPin("hf", "openai/gpt-oss-20b", "2" * 40, "https://hf-mirror.com"),
        files=(LockedFile("z.safetensors", 10, SHA_A, "lfs"), LockedFile("a/config.json", 2, SHA_B, "git-blob")),
        created_at="2025-08-05T12:00:00Z",
    )


def test_round_trip_sorted_and_stable(tmp_path: Path) -> None:
    path = write_lock(tmp_path, sample_lock())
    assert path == tmp_path / LOCK_NAME
    text = path.read_text()
    data = json.loads(text)
    assert list(data) == sorted(data)
    assert [f["path"] for f in data["files"]] == ["a/config.json", "z.safetensors"]
    assert data["schema_version"] == SCHEMA_VERSION and data["tool_version"] == __version__
    assert text.endswith("\n") and text == json.dumps(data, indent=2, sort_keys=True) + "\n"
    lock = read_lock(tmp_path)
    assert lock.files[0].path == "a/config.json"
    assert lock.model == sample_lock().model and lock.code == sample_lock().code
    write_lock(tmp_path, lock)
    assert path.read_text() == text  # rewriting a read lock is byte-identical


def test_atomic_write_leaves_no_temp_and_replaces(tmp_path: Path) -> None:
    write_lock(tmp_path, sample_lock())
    write_lock(tmp_path, Lock(code=None, model=None, files=()))
    assert sorted(p.name for p in tmp_path.iterdir()) == [LOCK_NAME]
    assert read_lock(tmp_path).files == ()
    assert (tmp_path / LOCK_NAME).stat().st_mode & 0o044  # readable by others like any file (umask), not 0600


def test_refuses_to_write_invalid_lock(tmp_path: Path) -> None:
    bad = Lock(code=None, model=ModelPin("hf", "r", "c", "https://x"), files=(LockedFile("../x", 1, SHA_A, "lfs"),))
    with pytest.raises(ValueError):
        write_lock(tmp_path, bad)
    assert not (tmp_path / LOCK_NAME).exists()


@pytest.mark.parametrize(
    "mutate, needle",
    [
        (lambda d: d.update(schema_version=99), "schema_version 99"),
        (lambda d: d.pop("files"), "missing key 'files'"),
        (lambda d: d["files"][0].update(sha256="XYZ"), "sha256"),
        (lambda d: d["files"][0].update(size=-1), "size"),
        (lambda d: d["files"][0].update(size=True), "integer"),
        (lambda d: d["files"][0].update(path="../../etc/passwd"), "'..'"),
        (lambda d: d["files"][0].update(path="/abs"), "absolute"),
        (lambda d: d["files"][0].update(path="a\\b"), "backslash"),
        (lambda d: d["files"][0].update(hash_source="trust-me"), "hash_source"),
        (lambda d: d["files"].append(dict(d["files"][0])), "duplicate"),
        (lambda d: d["model"].update(endpoint="https://user:pw@mirror.example"), "credentials"),
        (lambda d: d["model"].update(source="ftp"), "model.source"),
        (lambda d: d["code"].update(commit="main"), "code.commit"),
        (lambda d: d.update(surprise=1), "unknown key"),
    ],
)
def test_strict_validation(tmp_path: Path, mutate, needle: str) -> None:
    data = sample_lock().to_dict()
    mutate(data)
    (tmp_path / LOCK_NAME).write_text(json.dumps(data))
    with pytest.raises(LockError) as err:
        read_lock(tmp_path / LOCK_NAME)
    assert needle in str(err.value)
    assert err.value.exit_code == 3


def test_unreadable_lock_errors(tmp_path: Path) -> None:
    with pytest.raises(LockError, match="not found"):
        read_lock(tmp_path)
    (tmp_path / LOCK_NAME).write_text("{not json")
    with pytest.raises(LockError, match="not valid JSON"):
        read_lock(tmp_path)
    (tmp_path / LOCK_NAME).write_text("[]")
    with pytest.raises(LockError, match="JSON object"):
        read_lock(tmp_path)


def test_public_url_strips_credentials() -> None:
    assert public_url("https://user:tok@hf-mirror.com/") == "https://hf-mirror.com"
    assert public_url("http://127.0.0.1:8080/x?token=abc#f") == "http://127.0.0.1:8080/x"
    assert public_url("git@github.com:openai/gpt-oss.git") == "git@github.com:openai/gpt-oss.git"


@pytest.mark.parametrize("path", ["", "/etc/x", "a/../b", "./a", "a//b", "a\\b", "C:/x", "a\x00b", "..", "a/"])
def test_check_relpath_refuses(path: str) -> None:
    assert check_relpath(path) is not None


def test_check_relpath_accepts() -> None:
    assert check_relpath("original/model.safetensors") is None
    assert check_relpath(".gitattributes") is None


def test_null_code_and_model_allowed() -> None:
    lock = lock_from_dict({"schema_version": 1, "tool_version": "x", "created_at": "t", "code": None, "model": None,
                           "files": []})
    assert lock.code is None and lock.model is None


def test_deeply_nested_lock_is_a_lock_error(tmp_path: Path) -> None:
    (tmp_path / LOCK_NAME).write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(LockError, match="not valid JSON"):
        read_lock(tmp_path)
