"""Catch logits nobody can sample from, so that NaN-sampled text is never returned as a success.

A float16 overflow (or a broken checkpoint) turns logits into NaN or +inf; ``argmax`` then picks token 0 every step
and a reply of ``"!!!!!!!!"`` goes out with status 200. The engines call ``non_finite_rows(logits)`` on each step's
``[rows, vocab]`` logits (one reduction, one small host copy) and fail exactly those rows with ``NonFiniteLogits``,
a 500 ``engine_error`` that says what happened; the other rows of the batch continue. ``-inf`` alone is a legitimate
mask; a row is unusable when it holds a NaN or a ``+inf``, or when every entry is ``-inf``.

torch is only touched through the tensor passed in (nothing is imported here).
"""

from __future__ import annotations

from typing import Any

from gptoss_cli.serve.errors import EngineFailure

NON_FINITE_MESSAGE = (
    "The model produced invalid scores (NaN or infinity) for this request, so no answer was generated; this "
    "usually means a float16 overflow: serve with --dtype bfloat16 (GPU) or float32 (CPU)."
)


class NonFiniteLogits(EngineFailure):
    """One row's logits cannot be sampled from (500 ``server_error`` / ``engine_error``)."""

    def __init__(self, message: str = NON_FINITE_MESSAGE) -> None:
        super().__init__(message)


def non_finite_rows(logits: Any) -> list[int]:
    """Indices of the rows of ``logits`` (``[rows, vocab]``, or ``[vocab]`` for one row) that cannot be sampled."""
    scores = logits if logits.dim() > 1 else logits.unsqueeze(0)
    scores = scores.reshape(scores.shape[0], -1)
    bad = (scores.isnan() | scores.isposinf()).any(dim=-1) | scores.isneginf().all(dim=-1)
    return bad.nonzero().flatten().tolist()


def check_finite(logits: Any) -> None:
    """Raise ``NonFiniteLogits`` when any row of ``logits`` cannot be sampled (the one-request path)."""
    if non_finite_rows(logits):
        raise NonFiniteLogits()


__all__ = ["NON_FINITE_MESSAGE", "NonFiniteLogits", "check_finite", "non_finite_rows"]
