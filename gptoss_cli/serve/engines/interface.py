"""The engine seam: what the request pipeline needs from a model. Nothing heavy is imported here.

Two kinds of engine sit behind the one pipeline (``serve/generation/pipeline.py``):

- ``Engine`` answers **token ids**: the front renders harmony, the engine streams generated ids, the front parses
  them (``engines/transformers/``: torch + transformers, imported lazily; ``engines/scripted.py`` for tests).
- ``ChatBackend`` answers **whole OpenAI requests** (``engines/vllm/`` — a supervised ``vllm serve`` child — and
  ``engines/upstream/`` — any OpenAI-compatible server): the front relays the client's JSON and the chunks back.

``answers_requests(engine)`` tells them apart by the protocol they implement. Either way the pipeline adds the
response cache, admission (429), deadlines (504), cancellation, metrics and the access log. What an engine reports
back (batch steps, upstream exchanges, a child that died for good) goes to the ``EngineHooks`` given to its
constructor.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, AsyncIterator, Callable, Protocol, runtime_checkable

from gptoss_cli.serve.harmony.tokens import HARMONY_SPECIAL_TOKENS, HARMONY_STOP_TEXTS, STOP_TOKEN_TEXTS, Tokenizer

GREEDY_TEMPERATURE = 1e-5  # temperatures below this are greedy (dividing logits by 1e-300 overflows float32)


@dataclass(frozen=True)
class SamplingParams:
    """Per-request sampling parameters (honoured per request, also under batching)."""

    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    stop_token_ids: tuple[int, ...] = ()

    @property
    def greedy(self) -> bool:
        return self.temperature < GREEDY_TEMPERATURE


@runtime_checkable
class Engine(Protocol):
    """A loaded model that turns prompt token ids into a stream of generated token ids."""

    tokenizer: Tokenizer
    max_model_len: int
    description: str

    def load(self) -> None:
        """Load weights (blocking; the server calls it in a worker thread during startup)."""

    def generate(self, prompt_ids: list[int], params: SamplingParams) -> AsyncIterator[int]:
        """Yield generated token ids, stopping after a stop token or ``params.max_tokens`` tokens.

        The stop token itself is yielded (the parser needs to see ``<|return|>`` / ``<|call|>``). Closing the
        iterator or cancelling the consuming task must stop the generation promptly and free its resources.
        """

    def close(self) -> None:
        """Release the model (called on shutdown)."""


@runtime_checkable
class ChatBackend(Protocol):
    """An engine that answers whole OpenAI requests (the front relays them instead of rendering harmony).

    ``kind`` is ``"chat"`` or ``"completion"``; ``body`` is the client's JSON (model already checked by the front).
    ``complete`` returns the normalised reply; ``open_stream`` waits for the upstream's answer to start (so errors
    still get their HTTP status) and returns the normalised chunks. Both raise ``APIError`` subclasses.
    """

    description: str
    max_model_len: int | None

    async def start(self) -> None: ...

    async def ready(self) -> bool: ...

    async def complete(self, kind: str, body: dict[str, Any], model: str) -> dict[str, Any]: ...

    async def open_stream(self, kind: str, body: dict[str, Any], model: str) -> AsyncIterator[dict[str, Any]]: ...

    async def close(self) -> None: ...


def answers_requests(engine: object) -> bool:
    """Whether ``engine`` is a ``ChatBackend`` (whole requests) rather than an ``Engine`` (token ids)."""
    return isinstance(engine, ChatBackend)


def _ignore(*args: Any) -> None:
    return None


@dataclass(frozen=True)
class EngineHooks:
    """Where an engine reports what it observes; given to its constructor (``engines/build.py``).

    ``on_step(rows, seconds)`` after every batched decode step; ``observe(Observation)`` after every upstream
    exchange; ``on_failure(reason)`` once when a supervised child is gone for good (the server then exits, code 3);
    ``on_event(name)`` in a request's own task when the engine holds it back: ``"kv_wait"`` (it waits for KV
    memory) or ``"preempted"`` (its KV was dropped to make room; it resumes, recomputed).
    """

    on_step: Callable[[int, float], None] = _ignore
    on_event: Callable[[str], None] = _ignore
    observe: Callable[[Any], None] = _ignore
    on_failure: Callable[[str], None] = _ignore


__all__ = [
    "GREEDY_TEMPERATURE",
    "HARMONY_SPECIAL_TOKENS",
    "HARMONY_STOP_TEXTS",
    "STOP_TOKEN_TEXTS",
    "ChatBackend",
    "Engine",
    "EngineHooks",
    "SamplingParams",
    "Tokenizer",
    "answers_requests",
]
