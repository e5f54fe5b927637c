"""Retries: a try that made progress resets the retry budget (bounded overall); no progress still gives up."""

from __future__ import annotations

from pathlib import Path

import pytest

from gptoss_cli.errors import NetworkError
from gptoss_cli.fetch import FetchOptions, Hooks, WeightsSpec, fetch
from gptoss_cli.verify import verify_lock
from tests.hub_fixtures import FakeHub, FakeRepo, random_bytes

SHARD = "model-00000-of-00001.safetensors"
MIB = 1024 * 1024


def run(hub: FakeHub, dest: Path) -> object:
    spec = WeightsSpec(repo_id="org/cut", endpoint=hub.url)
    return fetch(FetchOptions(dest=dest, code=None, weights=spec, jobs=2), Hooks(retry_wait=0.01))


def test_a_server_cutting_every_get_after_1_mib_still_completes(tmp_path: Path) -> None:
    files = {"config.json": b"{}\n", SHARD: random_bytes(8 * MIB + 17, 9)}
    with FakeHub([FakeRepo.build("org/cut", files)]) as hub:
        hub.cut_every[SHARD] = MIB
        run(hub, tmp_path / "dest")
        gets = hub.file_requests(SHARD)
    assert len(gets) == 9  # every try progressed 1 MiB: more tries than the 6 a stalled download gets
    assert gets[-1]["range"] == f"bytes={8 * MIB}-"
    assert verify_lock(tmp_path / "dest").ok


def test_tiny_progress_per_try_is_still_bounded(tmp_path: Path) -> None:
    files = {"config.json": b"{}\n", SHARD: random_bytes(300 * 1024, 9)}
    with FakeHub([FakeRepo.build("org/cut", files)]) as hub:
        hub.cut_every[SHARD] = 1000
        with pytest.raises(NetworkError, match="giving up after 7 tries"):
            run(hub, tmp_path / "dest")
        assert len(hub.file_requests(SHARD)) == 7
