"""``serve/engines/transformers/numerics.py``: rows of logits that cannot be sampled from are found, the others are left alone."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from gptoss_cli.serve.errors import APIError  # noqa: E402
from gptoss_cli.serve.engines.transformers.numerics import NON_FINITE_MESSAGE, NonFiniteLogits, check_finite, non_finite_rows  # noqa: E402


def test_only_the_rows_that_cannot_be_sampled_are_reported():
    logits = torch.randn(5, 11)
    logits[1, 3] = float("nan")
    logits[2, 0] = float("inf")
    logits[3, :] = float("-inf")
    logits[4, :7] = float("-inf")  # a mask, not a failure
    assert non_finite_rows(logits) == [1, 2, 3]
    assert non_finite_rows(logits[[0, 4]]) == []


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_float16_overflow_is_caught_in_every_dtype(dtype):
    big = torch.full((2, 8), 60000.0, dtype=dtype)
    overflowed = big * 4 - big * 4  # inf - inf = nan once the product leaves float16's range
    assert non_finite_rows(overflowed) == ([0, 1] if dtype == torch.float16 else [])
    assert non_finite_rows(torch.tensor([float("nan"), 1.0], dtype=dtype)) == [0]  # one row, [vocab]


def test_check_finite_raises_a_clear_engine_error():
    check_finite(torch.zeros(1, 4))
    with pytest.raises(NonFiniteLogits) as caught:
        check_finite(torch.tensor([[float("nan"), 0.0]]))
    err = caught.value
    assert isinstance(err, APIError) and err.status == 500
    assert err.envelope()["error"]["code"] == "engine_error" and "--dtype bfloat16" in err.message
    assert err.message == " ".join(NON_FINITE_MESSAGE.split())


def test_a_batch_row_with_broken_logits_fails_alone():
    """The batched loop's sampler: the NaN row gets NonFiniteLogits in its place, the other rows their tokens."""
    from types import SimpleNamespace

    from gptoss_cli.serve.engines.transformers.batch_state import sample
    from gptoss_cli.serve.engines.interface import SamplingParams
    from gptoss_cli.serve.engines.transformers.sampling import RowSampler

    logits = torch.zeros(3, 6)
    logits[0, 4] = logits[2, 1] = 5.0
    logits[1, 2] = float("nan")
    rows = [SimpleNamespace(sampler=RowSampler(SamplingParams(max_tokens=4, temperature=t), "cpu")) for t in (0.0, 0.0, 0.7)]
    picked = sample(logits, rows)
    assert picked[0] == 4 and isinstance(picked[1], NonFiniteLogits) and isinstance(picked[2], int)


def _nan_model(tmp_path):
    from safetensors.torch import load_file, save_file

    from tests.model_fixtures import make_tiny_model

    folder = make_tiny_model(tmp_path / "nan")
    weights = load_file(str(folder / "model.safetensors"))
    weights["lm_head.weight"][:, 0] = float("nan")  # every logit NaN: what a float16 overflow produces
    save_file(weights, str(folder / "model.safetensors"), metadata={"format": "pt"})
    return folder


@pytest.mark.parametrize("batched", [False, True])
def test_nan_logits_are_an_engine_error_not_a_reply(tmp_path, batched):
    import asyncio

    from gptoss_cli.serve.engines.transformers.batching import BatchingEngine
    from gptoss_cli.serve.engines.interface import SamplingParams
    from gptoss_cli.serve.engines.transformers.engine import TransformersEngine
    from tests.model_fixtures import load_engine

    engine = load_engine(TransformersEngine(_nan_model(tmp_path), device="cpu", dtype="float32"))
    if batched:
        inner, engine = engine, BatchingEngine(engine.model, engine.tokenizer, max_model_len=64, max_batch=2)
        engine.load()

    async def go():
        return [t async for t in engine.generate([5, 6, 7], SamplingParams(max_tokens=4, temperature=0.0))]

    try:
        with pytest.raises(Exception) as caught:
            asyncio.run(asyncio.wait_for(go(), 60))
        assert "NaN or infinity" in str(caught.value), repr(caught.value)
    finally:
        engine.close()
