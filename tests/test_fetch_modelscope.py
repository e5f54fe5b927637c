"""--source modelscope against a fake ModelScope API on 127.0.0.1 (same lock and verify flow)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gptoss_cli.cli import app
from gptoss_cli.fetch.modelscope import normalize_endpoint
from gptoss_cli.lockfile import read_lock
from gptoss_cli.verify import verify_lock
from tests.hub_fixtures import DEFAULT_SELECTION, FakeHub, FakeRepo, tiny_model_files

runner = CliRunner()
MS_ID = "openai-mirror/gpt-oss-20b"
SHARD = "model-00000-of-00002.safetensors"


@pytest.fixture
def ms_hub():
    with FakeHub([FakeRepo.build(MS_ID, tiny_model_files(), branch="master")]) as hub:
        yield hub


def test_modelscope_default_id_lock_and_verify(tmp_path: Path, ms_hub: FakeHub) -> None:
    dest = tmp_path / "dest"
    res = runner.invoke(app, ["--json", "fetch", "--no-code", "--source", "modelscope", "--endpoint", ms_hub.url,
                              "--dest", str(dest)])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["model"]["repo_id"] == MS_ID and doc["model"]["source"] == "modelscope"
    lock = read_lock(dest)
    assert lock.model is not None and lock.model.commit == ms_hub.repos[MS_ID].commit
    assert {f.path for f in lock.files} == set(DEFAULT_SELECTION)
    assert {f.hash_source for f in lock.files} == {"modelscope"}
    assert verify_lock(dest).ok
    listing = [r for r in ms_hub.requests if r.get("kind") == "ms-files"]
    assert listing and not [r for r in ms_hub.requests if r.get("kind") in ("info", "tree", "resolve")]


def test_modelscope_endpoint_from_env_and_resume(tmp_path: Path, ms_hub: FakeHub,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELSCOPE_ENDPOINT", ms_hub.url)
    ms_hub.cut_after[SHARD] = 50_000
    res = runner.invoke(app, ["fetch", "--no-code", "--source", "modelscope", "--dest", str(tmp_path / "d")])
    assert res.exit_code == 0, res.output
    assert [g["range"] for g in ms_hub.file_requests(SHARD)] == [None, "bytes=50000-"]


def test_modelscope_hash_mismatch_exit_3(tmp_path: Path, ms_hub: FakeHub) -> None:
    ms_hub.corrupt[SHARD] = 2
    res = runner.invoke(app, ["fetch", "--no-code", "--source", "modelscope", "--endpoint", ms_hub.url,
                              "--dest", str(tmp_path / "d")])
    assert res.exit_code == 3 and SHARD in res.stderr and ms_hub.repos[MS_ID].files[SHARD].sha256 in res.stderr


def test_modelscope_unknown_model_and_traversal(tmp_path: Path, ms_hub: FakeHub) -> None:
    res = runner.invoke(app, ["fetch", "--no-code", "--source", "modelscope", "--endpoint", ms_hub.url,
                              "--model", "no/such", "--dest", str(tmp_path / "d")])
    assert res.exit_code == 3 and "not found" in res.stderr
    ms_hub.extra_tree.append({"Name": "x", "Path": "../x.json", "Type": "blob", "Size": 1, "Sha256": "0" * 64})
    res = runner.invoke(app, ["fetch", "--no-code", "--source", "modelscope", "--endpoint", ms_hub.url,
                              "--dest", str(tmp_path / "d")])
    assert res.exit_code == 3 and "refusing" in res.stderr


def test_lock_from_modelscope_pins_a_second_fetch(tmp_path: Path, ms_hub: FakeHub) -> None:
    first = tmp_path / "first"
    args = ["fetch", "--no-code", "--source", "modelscope", "--endpoint", ms_hub.url]
    assert runner.invoke(app, [*args, "--dest", str(first)]).exit_code == 0
    res = runner.invoke(app, [*args, "--dest", str(tmp_path / "second"), "--lock", str(first / "gptoss.lock.json")])
    assert res.exit_code == 0, res.output
    assert read_lock(tmp_path / "second").files == read_lock(first).files


def test_normalize_endpoint() -> None:
    assert normalize_endpoint("www.modelscope.cn") == "https://www.modelscope.cn"
    assert normalize_endpoint("http://127.0.0.1:9/") == "http://127.0.0.1:9"


def test_hf_token_is_not_sent_to_modelscope(tmp_path: Path, ms_hub: FakeHub) -> None:
    res = runner.invoke(app, ["fetch", "--no-code", "--source", "modelscope", "--endpoint", ms_hub.url,
                              "--dest", str(tmp_path / "d")], env={"HF_TOKEN": "hf_NotForModelScope"})
    assert res.exit_code == 0, res.output
    assert ms_hub.requests and not any(r["auth"] for r in ms_hub.requests)
