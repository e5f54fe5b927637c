"""``serve/numerics.py``: rows of logits that cannot be sampled from are found, the others are left alone."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from gptoss_cli.serve.errors import APIError  # noqa: E402
from gptoss_cli.serve.numerics import NON_FINITE_MESSAGE, NonFiniteLogits, check_finite, non_finite_rows  # noqa: E402


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
