"""gptoss fetch also fetches the native MXFP4 kernel repo transformers loads (through the same loopback endpoint),
hashed into the lock, covered by verify, and found by serve offline (gptoss_cli/kernels.py)."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from gptoss_cli.cli import app
from gptoss_cli.kernels import KERNEL_REPO, fetched_kernel, wanted_kernel
from gptoss_cli.lockfile import LOCK_NAME, read_lock
from gptoss_cli.verify import verify_lock
from tests.hub_fixtures import FakeHub, FakeRepo, fake_hub, random_bytes  # noqa: F401 - fixture

runner = CliRunner()
KERNEL_FILES = {
    "build/torch-cuda/__init__.py": b"from ._ops import ops\n",
    "build/torch-cuda/_ops.py": b"ops = None\n",
    "build/torch-cuda/matmul_ogs.so": random_bytes(70_000, 9),
    "README.md": b"# triton kernels\n",
}


def _kernel_repo(hub: FakeHub) -> FakeRepo:
    return hub.add(FakeRepo.build(KERNEL_REPO, KERNEL_FILES, branch="v1"))


def fetch_cli(hub: FakeHub, dest: Path, *args: str):
    return runner.invoke(app, ["fetch", "--no-code", "--endpoint", hub.url, "--model", "org/tiny", "--dest",
                               str(dest), *args])


def test_the_installed_transformers_asks_for_version_1_of_the_triton_kernels() -> None:
    assert wanted_kernel() == (KERNEL_REPO, 1)


def test_kernels_are_fetched_hashed_locked_and_verified(tmp_path: Path, fake_hub: FakeHub) -> None:
    repo = _kernel_repo(fake_hub)
    dest = tmp_path / "dest"
    res = fetch_cli(fake_hub, dest, "--kernels", "--json")
    assert res.exit_code == 0, res.output
    folder = fetched_kernel(dest / "model")
    assert folder == dest / "model" / "kernels" / "gpt-oss-triton-kernels"
    assert (folder / "build/torch-cuda/matmul_ogs.so").read_bytes() == KERNEL_FILES["build/torch-cuda/matmul_ogs.so"]
    assert not (folder / "README.md").exists()  # only the build variants
    lock = read_lock(dest)
    assert lock.kernels is not None and lock.kernels.commit == repo.commit and lock.kernels.revision == "v1"
    assert lock.kernels.endpoint == fake_hub.url
    locked = {f.path: f.sha256 for f in lock.files}
    rel = "kernels/gpt-oss-triton-kernels/build/torch-cuda/matmul_ogs.so"
    assert locked[rel] == repo.files["build/torch-cuda/matmul_ogs.so"].sha256
    assert "config.json" in locked  # the weights are still there
    assert json.loads(res.stdout)["kernels"]["repo_id"] == KERNEL_REPO
    assert verify_lock(dest).ok
    (folder / "build/torch-cuda/_ops.py").write_bytes(b"ops = 'tampered'\n")
    assert not verify_lock(dest).ok


def test_a_rerun_without_weights_keeps_the_kernels_in_the_lock(tmp_path: Path, fake_hub: FakeHub) -> None:
    _kernel_repo(fake_hub)
    dest = tmp_path / "dest"
    assert fetch_cli(fake_hub, dest, "--kernels").exit_code == 0
    before = read_lock(dest)
    assert fetch_cli(fake_hub, dest, "--no-kernels").exit_code == 0  # weights again, kernels untouched
    after = read_lock(dest)
    assert after.kernels == before.kernels and {f.path for f in after.files} == {f.path for f in before.files}


def test_no_kernels_and_the_default_for_other_repos_fetch_none(tmp_path: Path, fake_hub: FakeHub) -> None:
    _kernel_repo(fake_hub)
    for args in ((), ("--no-kernels",)):
        dest = tmp_path / f"dest{len(args)}"
        assert fetch_cli(fake_hub, dest, *args).exit_code == 0
        assert read_lock(dest).kernels is None and fetched_kernel(dest / "model") is None
        assert "kernels" not in json.loads((dest / LOCK_NAME).read_text())  # older readers see the same lock
    assert not any(KERNEL_REPO in (r.get("path") or "") for r in fake_hub.requests)


def test_a_mirror_without_the_kernel_repo_is_a_note_not_a_failure(tmp_path: Path, fake_hub: FakeHub) -> None:
    dest = tmp_path / "dest"
    res = fetch_cli(fake_hub, dest, "--kernels")
    assert res.exit_code == 0, res.output
    assert "kernels:" in res.stderr and "without native kernels" in res.stderr
    assert read_lock(dest).kernels is None


def test_serve_points_kernels_at_the_fetched_folder(tmp_path: Path, fake_hub: FakeHub, monkeypatch) -> None:
    from gptoss_cli.serve.engines.transformers.engine import TransformersEngine

    _kernel_repo(fake_hub)
    dest = tmp_path / "dest"
    assert fetch_cli(fake_hub, dest, "--kernels").exit_code == 0
    monkeypatch.setenv("LOCAL_KERNELS", "other/repo=/opt/other")
    TransformersEngine(dest / "model")._point_kernels_at_fetched()
    import os

    entries = os.environ["LOCAL_KERNELS"].split(":")
    assert entries == ["other/repo=/opt/other", f"{KERNEL_REPO}={(dest / 'model/kernels/gpt-oss-triton-kernels').resolve()}"]


def test_the_lock_records_the_shipped_vocabulary_and_verify_rehashes_it(tmp_path: Path, fake_hub: FakeHub,
                                                                         monkeypatch) -> None:
    from gptoss_cli import vocab

    dest = tmp_path / "dest"
    assert fetch_cli(fake_hub, dest).exit_code == 0
    pin = read_lock(dest).vocab
    assert pin is not None and (pin.name, pin.size, pin.sha256) == (vocab.O200K_NAME, vocab.O200K_SIZE,
                                                                    vocab.O200K_SHA256)
    assert json.loads((dest / LOCK_NAME).read_text())["vocab"]["sha256"] == vocab.O200K_SHA256
    assert verify_lock(dest).ok
    damaged = tmp_path / "vocab"
    damaged.mkdir()
    data = bytearray((vocab.SHIPPED / vocab.O200K_NAME).read_bytes())
    data[100] ^= 1
    (damaged / vocab.O200K_NAME).write_bytes(bytes(data))
    monkeypatch.setattr(vocab, "SHIPPED", damaged)
    result = verify_lock(dest)
    assert not result.ok and not result.mismatched  # the model files are fine; the shipped vocabulary is not
    assert result.vocab is not None and result.vocab.status == "mismatch"
    assert "shipped vocabulary gptoss_cli/vocab/o200k_base.tiktoken: mismatch" in result.summary()
