"""One list of pickle suffixes for fetch and serve (``.pickle`` and upper-case suffixes included)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gptoss_cli.errors import CouldNotRun, UsageError
from gptoss_cli.fetch.select import refuse_pickle


@pytest.mark.parametrize("name", ["weights.pickle", "model.PT", "pytorch_model.bin", "x.ckpt"])
def test_fetch_and_serve_refuse_the_same_pickle_files(tmp_path: Path, name: str) -> None:
    from gptoss_cli.serve.engines.transformers.engine import check_weights

    with pytest.raises(UsageError, match="pickle"):
        refuse_pickle([name], allow_pickle=False)
    (tmp_path / name).write_bytes(b"\x80\x04.")
    with pytest.raises(CouldNotRun, match=f"only pickle weights \\({name}\\)"):
        check_weights(tmp_path)


def test_one_list() -> None:
    from gptoss_cli import weights
    from gptoss_cli.fetch import select
    from gptoss_cli.serve.engines.transformers import engine as transformers_engine

    assert select.PICKLE_SUFFIXES is weights.PICKLE_SUFFIXES
    assert not hasattr(transformers_engine, "_PICKLE_SUFFIXES")
