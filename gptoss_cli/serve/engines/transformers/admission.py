"""How the batch loop (``batching.py``) shares the KV budget: rows reserve KV as they grow, never for their worst case.

The running batch is left-padded to ``T`` columns, so it holds ``rows × (T × bytes_per_token +
sliding_bytes_per_row)`` bytes of KV (``KVSizing.cost``). A request without ``max_tokens`` may grow to the whole
context, but it only costs what it holds so far:

- ``admit``: waiting requests join in order of arrival while the batch with them, grown by ``GROW_TOKENS`` columns,
  fits the budget. The first one that does not fit waits (and the ones behind it); a lone request always runs, even
  past the budget, so one long request never blocks the server, and a short request behind it starts at once.
- ``newest_first``: before a decode step that would take the batch past the budget, the newest rows leave (their KV
  is dropped) until it fits or one row is left. The loop puts them back at the head of the queue; they resume by
  prefilling their prompt plus the tokens they already produced, with their own sampler, so their stream goes on
  unchanged (greedy and seeded answers included) — the client only sees a pause.

Pure Python (no torch): the loop thread calls it with its rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

GROW_TOKENS = 32  # head room a newcomer needs beyond the batch's current length (a block of growth for every row)


@dataclass(frozen=True)
class KVSizing:
    """What the KV cache of this model costs, and what the budget allows."""

    bytes_per_token: int  # all full-attention layers, K and V
    sliding_bytes_per_row: int  # sliding layers are capped at the window
    budget_bytes: int
    max_model_len: int

    def cost(self, rows: int, length: int) -> int:
        """Bytes of KV ``rows`` rows padded to ``length`` columns hold."""
        return rows * (length * self.bytes_per_token + self.sliding_bytes_per_row)

    def fits(self, rows: int, length: int) -> bool:
        return self.cost(rows, length) <= self.budget_bytes

    def rows_at_full_length(self) -> int:
        per_row = self.cost(1, self.max_model_len)
        return max(0, self.budget_bytes // max(per_row, 1))


def kv_sizing(config: Any, dtype_bytes: int, budget_bytes: int, max_model_len: int) -> KVSizing:
    """KV bytes per token from a transformers config (the one rule: ``memory.kv_shape``)."""
    from gptoss_cli.serve.engines.transformers.memory import kv_shape

    shape = kv_shape(config, dtype_bytes)
    return KVSizing(
        bytes_per_token=shape.full_layers * shape.layer_token_bytes,
        sliding_bytes_per_row=shape.sliding_layers * shape.window * shape.layer_token_bytes,
        budget_bytes=budget_bytes,
        max_model_len=max_model_len,
    )


def context_length(req: Any) -> int:
    """Tokens a request puts in the cache when it is (re)admitted: its prompt and what it has produced so far."""
    return len(req.prompt) + len(req.generated)


def admit(pending: list[Any], running: int, length: int, sizing: KVSizing, *, max_batch: int,
          max_prefill_tokens: int) -> tuple[list[Any], Any]:
    """Take the requests that join now off the head of ``pending`` (see the module docstring); also return the
    request held back for lack of KV (None when none was)."""
    admitted: list[Any] = []
    prefill_tokens = 0
    while pending and running + len(admitted) < max_batch:
        cand = pending[0]
        size = context_length(cand)
        rows = running + len(admitted) + 1
        grown = min(sizing.max_model_len, max(length, size) + GROW_TOKENS)
        if rows > 1 and not sizing.fits(rows, grown):
            return admitted, cand
        if admitted and prefill_tokens + size > max_prefill_tokens:
            break
        admitted.append(pending.pop(0))
        length = max(length, size)
        prefill_tokens += size
    return admitted, None


def newest_first(rows: Sequence[Any], length: int, sizing: KVSizing) -> list[Any]:
    """The rows to preempt before the next decode step (it adds one column): newest first, until the rest fits;
    never the last row."""
    order = sorted(rows, key=lambda r: r.seq, reverse=True)
    victims: list[Any] = []
    while len(rows) - len(victims) > 1 and not sizing.fits(len(rows) - len(victims), length + 1):
        victims.append(order[len(victims)])
    return victims


__all__ = ["GROW_TOKENS", "KVSizing", "admit", "context_length", "kv_sizing", "newest_first"]
