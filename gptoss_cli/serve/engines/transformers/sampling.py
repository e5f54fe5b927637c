"""Choosing the next token: the one implementation behind both the single-sequence engine and the batching loop.

``RowSampler(params, device)`` holds what one request's sampling needs across steps: its parameters, its own seeded
``torch.Generator`` (so a seed gives the same answer alone and in any batch) and the counts of the tokens it produced
(for the penalties). ``pick(logits)`` takes the 1-D logits of that request and returns the next token id:

- presence / frequency penalties (OpenAI semantics, on the generated tokens) are subtracted first;
- greedy (argmax) when ``params.greedy``: temperature below ``GREEDY_TEMPERATURE`` (1e-5). Tiny temperatures such as
  1e-300 would otherwise turn a float32 division into infinities and NaN probabilities;
- otherwise softmax(logits / temperature), cut to the smallest set whose mass reaches ``top_p``, sampled with the
  request's generator.

Seeds: any integer is reduced modulo 2**64 (``seed_value``), the range ``torch.Generator.manual_seed`` takes; the HTTP
layer accepts the int64 range only, and the retries of ``response_format`` move a seed on past it.

torch is imported at module level: import this module lazily (inside functions).
"""

from __future__ import annotations

from typing import Any

import torch

from gptoss_cli.serve.engines.interface import SamplingParams

SEED_MODULUS = 2**64


def seed_value(seed: int) -> int:
    """The generator seed of a request seed: ``seed mod 2**64`` (negative seeds included)."""
    return int(seed) % SEED_MODULUS


def seeded_generator(device: Any, seed: int | None) -> torch.Generator:
    generator = torch.Generator(device=device)
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(seed_value(seed))
    return generator


class RowSampler:
    """The sampling state of one request (see the module docstring)."""

    def __init__(self, params: SamplingParams, device: Any) -> None:
        self.params = params
        self.generator = seeded_generator(device, params.seed)
        self.counts: torch.Tensor | None = None  # float [vocab] counts of produced tokens, only with penalties
        self._penalised = bool(params.presence_penalty or params.frequency_penalty)

    @property
    def plain_greedy(self) -> bool:
        """Greedy without penalties: the row's batch-wide argmax is its answer."""
        return self.params.greedy and not self._penalised

    def pick(self, logits: torch.Tensor, greedy_choice: int | None = None) -> int:
        """The next token from ``logits`` (1-D); ``greedy_choice`` is its argmax when the caller has it already."""
        params = self.params
        if self.plain_greedy and greedy_choice is not None:
            return int(greedy_choice)
        logits = logits.float()
        if self._penalised:
            if self.counts is None:
                self.counts = torch.zeros_like(logits)
            counts = self.counts
            logits = logits - params.frequency_penalty * counts - params.presence_penalty * (counts > 0)
        if params.greedy:
            token = int(torch.argmax(logits))
        else:
            token = _sample(logits / params.temperature, params.top_p, self.generator)
        if self.counts is not None:
            self.counts[token] += 1
        return token


def _sample(scaled: torch.Tensor, top_p: float, generator: torch.Generator) -> int:
    probs = torch.softmax(scaled, dim=-1)
    if top_p < 1.0:
        sorted_probs, order = torch.sort(probs, descending=True)
        keep = torch.cumsum(sorted_probs, dim=-1) - sorted_probs < top_p
        keep[0] = True
        probs = torch.zeros_like(probs).scatter_(0, order[keep], sorted_probs[keep])
    return int(torch.multinomial(probs, 1, generator=generator))


__all__ = ["SEED_MODULUS", "RowSampler", "seed_value", "seeded_generator"]
