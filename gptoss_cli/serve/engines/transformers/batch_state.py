"""The running batch of ``serve/engines/transformers/batching.py``: a left-padded ``DynamicCache`` plus per-row sampling (torch inside).

Layout: every row is left-padded to the same length ``T``; ``mask`` (rows × T) marks real tokens. Real tokens of a
row are contiguous and end at column ``T-1``, so the distance between two tokens is the same in padded and real
coordinates and the sliding-window mask stays right. Position ids are per row (real positions). Full-attention
layers keep ``T`` key/value columns; sliding layers keep the last ``min(T, window-1)`` and count ``T`` as their
cumulative length, exactly as transformers does for a left-padded ``generate()`` batch.

Only the loop thread touches this object. It imports torch at module level: import it lazily.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
from transformers import DynamicCache

from gptoss_cli.serve.engines.transformers.decode_step import decode_step_for
from gptoss_cli.serve.engines.transformers.numerics import NonFiniteLogits, non_finite_rows
from gptoss_cli.serve.engines.transformers.sampling import RowSampler

PAD_ID = 0


class BatchState:
    def __init__(self, model: Any) -> None:
        self.model = model
        self.device = next(model.parameters()).device
        self.rows: list[Any] = []
        self.cache: Any = None
        self.mask: torch.Tensor | None = None
        self._new: tuple[list[Any], Any, torch.Tensor] | None = None
        self.fast_step = decode_step_for(model)  # None: every step goes through model(...)
        # read once: ``model.dtype`` walks the parameters and config reads go through transformers' look-up
        self._eager = model.config._attn_implementation == "eager"
        self._dtype = model.dtype
        self._window = getattr(model.config, "sliding_window", None)

    # -- steps ----------------------------------------------------------------------------------------------------
    @property
    def length(self) -> int:
        """Columns of the running batch (its longest row; the others are left-padded to it)."""
        return int(self.mask.shape[1]) if self.rows and self.mask is not None else 0

    def prefill(self, reqs: list[Any], chunk: int = 256) -> list[Any]:
        """Run the prompts of ``reqs`` (left-padded, ``chunk`` columns per forward so attention scores stay small);
        return each one's next sampled token. A preempted request resumes here: its prompt and the tokens it had
        produced are prefilled, and it keeps its sampler (seeded generator, penalty counts)."""
        contexts = [list(r.prompt) + list(r.generated) for r in reqs]
        length = max(len(c) for c in contexts)
        ids = torch.full((len(reqs), length), PAD_ID, dtype=torch.long)
        mask = torch.zeros((len(reqs), length), dtype=torch.long)
        for i, c in enumerate(contexts):
            ids[i, length - len(c):] = torch.tensor(c, dtype=torch.long)
            mask[i, length - len(c):] = 1
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        ids, mask, positions = ids.to(self.device), mask.to(self.device), positions.to(self.device)
        cache = DynamicCache(config=self.model.config)
        logits = None
        for start in range(0, length, max(1, chunk)):
            end = min(length, start + max(1, chunk))
            out = self.model(input_ids=ids[:, start:end], attention_mask=mask[:, :end],
                             position_ids=positions[:, start:end], cache=cache, use_cache=True, logits_to_keep=1)
            logits = out.logits[:, -1, :]
        for r, c in zip(reqs, contexts):
            r.position = len(c)
            if r.sampler is None:
                r.sampler = RowSampler(r.params, self.device)
        self._new = (list(reqs), cache, mask)
        return sample(logits, reqs)

    def discard_pending(self) -> None:
        """Forget a prefill that failed half-way (the running batch was never touched by it)."""
        self._new = None

    def merge_pending(self, keep: Callable[[Any], bool]) -> None:
        """Add the rows prefilled last (those ``keep`` accepts) to the running batch."""
        assert self._new is not None
        reqs, cache, mask = self._new
        self._new = None
        idx = [i for i, r in enumerate(reqs) if keep(r)]
        if not idx:
            return
        if len(idx) != len(reqs):
            cache, mask = _select(cache, mask, idx)
            reqs = [reqs[i] for i in idx]
        if not self.rows:
            self.rows, self.cache, self.mask = reqs, cache, mask
            return
        self.cache, self.mask = _merge(self.cache, self.mask, cache, mask)
        self.rows = self.rows + reqs

    def decode(self) -> list[Any]:
        """One step for every row: feed each row's last token, return the next ones (see ``sample``)."""
        ids = torch.tensor([[r.generated[-1]] for r in self.rows], dtype=torch.long, device=self.device)
        positions = torch.tensor([[r.position] for r in self.rows], dtype=torch.long, device=self.device)
        self.mask = torch.cat([self.mask, torch.ones((len(self.rows), 1), dtype=self.mask.dtype,
                                                      device=self.device)], dim=-1)
        masks = self._decode_masks()
        if self.fast_step is not None and isinstance(masks, dict):
            logits = self.fast_step(ids, positions, self.cache, masks)
        else:
            logits = self.model(input_ids=ids, attention_mask=masks, position_ids=positions,
                                cache=self.cache, use_cache=True).logits[:, -1, :]
        for r in self.rows:
            r.position += 1
        return sample(logits, self.rows)

    def _decode_masks(self) -> Any:
        """The attention masks of one decode step, built here instead of by transformers (which rebuilds a causal
        mask per layer type every step: a tenth of a small model's step). A query of one token may see every key
        its layer keeps (full layers: all ``T`` columns; sliding layers: the last ``min(T, window)``), so only
        padding is masked, with the same additive ``finfo.min`` transformers uses; rows without padding need no
        mask at all. Other attention implementations get the 2-D mask and build their own."""
        if not self._eager:
            return self.mask
        total = self.mask.shape[1]
        if all(r.position + 1 == total for r in self.rows):  # no row is padded
            return {"full_attention": None, "sliding_attention": None}
        dtype = self._dtype
        additive = torch.where(self.mask[:, None, None, :].bool(), torch.zeros((), dtype=dtype, device=self.device),
                               torch.finfo(dtype).min)
        window = self._window or total
        return {"full_attention": additive, "sliding_attention": additive[..., -min(total, window):]}

    def drop_finished(self, finished: Callable[[Any], bool]) -> None:
        if not self.rows:
            return
        idx = [i for i, r in enumerate(self.rows) if not finished(r)]
        if len(idx) == len(self.rows):
            return
        if not idx:
            self.reset()
            return
        self.cache, self.mask = _select(self.cache, self.mask, idx)
        self.rows = [self.rows[i] for i in idx]
        _trim_leading_padding(self.cache, self)

    def reset(self) -> None:
        self.rows, self.cache, self.mask, self._new = [], None, None, None


# -- cache surgery ------------------------------------------------------------------------------------------------
def _layer_width(layer: Any, total: int) -> int:
    if getattr(layer, "is_sliding", False):
        return min(total, layer.sliding_window - 1)
    return total


def _pad_layer(layer: Any, old_total: int, new_total: int) -> None:
    if new_total == old_total or layer.keys is None or layer.keys.numel() == 0:
        if getattr(layer, "is_sliding", False):
            layer.cumulative_length = new_total
        return
    extra = _layer_width(layer, new_total) - layer.keys.shape[-2]
    if extra > 0:
        pad = (0, 0, extra, 0)
        layer.keys = torch.nn.functional.pad(layer.keys, pad)
        layer.values = torch.nn.functional.pad(layer.values, pad)
    if getattr(layer, "is_sliding", False):
        layer.cumulative_length = new_total


def _merge(cache_a: Any, mask_a: torch.Tensor, cache_b: Any, mask_b: torch.Tensor) -> tuple[Any, torch.Tensor]:
    ta, tb = mask_a.shape[1], mask_b.shape[1]
    total = max(ta, tb)
    for la, lb in zip(cache_a.layers, cache_b.layers):
        _pad_layer(la, ta, total)
        _pad_layer(lb, tb, total)
        la.keys = torch.cat([la.keys, lb.keys], dim=0)
        la.values = torch.cat([la.values, lb.values], dim=0)
    mask_a = torch.nn.functional.pad(mask_a, (total - ta, 0))
    mask_b = torch.nn.functional.pad(mask_b, (total - tb, 0))
    return cache_a, torch.cat([mask_a, mask_b], dim=0)


def _select(cache: Any, mask: torch.Tensor, idx: Sequence[int]) -> tuple[Any, torch.Tensor]:
    index = torch.tensor(list(idx), dtype=torch.long, device=mask.device)
    for layer in cache.layers:
        if layer.keys is not None and layer.keys.numel():
            layer.keys = layer.keys.index_select(0, index)
            layer.values = layer.values.index_select(0, index)
    return cache, mask.index_select(0, index)


def _trim_leading_padding(cache: Any, state: BatchState) -> None:
    """Drop leading columns that are padding in every row (they only cost compute)."""
    mask = state.mask
    real = mask.any(dim=0).nonzero()
    lead = int(real[0]) if real.numel() else 0
    if lead <= 0:
        return
    total = mask.shape[1]
    new_total = total - lead
    for layer in cache.layers:
        if layer.keys is None or layer.keys.numel() == 0:
            continue
        width = _layer_width(layer, new_total)
        if layer.keys.shape[-2] > width:
            layer.keys = layer.keys[:, :, -width:, :]
            layer.values = layer.values[:, :, -width:, :]
        if getattr(layer, "is_sliding", False):
            layer.cumulative_length = new_total
    state.mask = mask[:, lead:]


# -- sampling -----------------------------------------------------------------------------------------------------
def sample(logits: torch.Tensor, reqs: Sequence[Any]) -> list[Any]:
    """Each row's next token, picked by that row's own ``RowSampler`` (``serve/engines/transformers/sampling.py``). A row whose sampling
    fails gets the exception in its place: it fails alone, the other rows go on. So does a row whose logits hold a
    NaN or +inf (a float16 overflow): its reply would be garbage sampled as a success (``serve/engines/transformers/numerics.py``)."""
    logits = logits.float()
    plain = [r.sampler.plain_greedy for r in reqs]
    greedy = logits.argmax(dim=-1).tolist() if any(plain) else [None] * len(reqs)
    broken = set(non_finite_rows(logits))
    out: list[Any] = []
    for i, r in enumerate(reqs):
        if i in broken:
            out.append(NonFiniteLogits())
            continue
        try:
            out.append(r.sampler.pick(logits[i], greedy[i] if plain[i] else None))
        except Exception as exc:  # noqa: BLE001 - handed to that row's consumer
            out.append(exc)
    return out
