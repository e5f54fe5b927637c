"""What one request asks of an engine, in the shape the pipeline (``generation/pipeline.py``) handles for all engines.

A ``Job`` says how to start the engine's work, which cache key (if any) it has, how its items are stored in and
replayed from the cache, what counts as output (for time to first token), and its token usage. One job per request;
it accumulates what it has seen.

- ``TokenJob``: a token-level engine (``Engine.generate``); items are token ids. Deterministic requests (temperature
  0 or a seed) are cached by prompt ids + sampling parameters; a generation is stored when it ended by itself.
- ``RelayJob``: a request-level engine (``ChatBackend``: vLLM, an upstream); items are the whole reply (one item) or
  the normalised stream chunks. Deterministic non-streamed replies are cached by the client's JSON; streams are not.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, AsyncIterator, Callable, Protocol, Sequence

from gptoss_cli.serve.engines.interface import SamplingParams
from gptoss_cli.serve.generation.cache import KEY_PREFIX, cache_key

_NOT_CACHED_KEYS = ("stream", "stream_options", "user", "model")
_COMPLETE_FINISH = ("stop", "tool_calls", "length")


class Job(Protocol):
    prompt_ids: Sequence[int] | None  # known before the engine runs (token engines), else None
    output_ids: Sequence[int] | None  # generated token ids, for --log-prompts (token engines)

    def start(self) -> AsyncIterator[Any]:
        """The engine's items (called once, after admission)."""

    def cache_key(self, model_id: str) -> str | None:
        """The response-cache key of a deterministic request; None: not cached."""

    def seen(self, item: Any) -> bool:
        """Account for one item; True when it is output the client sees (the first one times TTFT)."""

    def usage(self) -> tuple[int | None, int | None]:
        """(prompt tokens, completion tokens) so far; None where unknown."""

    def complete(self, exhausted: bool) -> bool:
        """Whether what was seen is a whole answer worth caching (``exhausted``: the engine's iterator ended)."""

    def to_cache(self) -> list[int]:
        """What the cache stores for this answer."""

    def from_cache(self, stored: list[int]) -> list[Any]:
        """The items to replay from a stored answer."""


class TokenJob:
    def __init__(self, generate: Callable[[list[int], SamplingParams], AsyncIterator[int]], prompt_ids: list[int],
                 params: SamplingParams) -> None:
        self._generate = generate
        self.prompt_ids = prompt_ids
        self.params = params
        self.output_ids: list[int] = []

    def start(self) -> AsyncIterator[int]:
        return self._generate(self.prompt_ids, self.params)

    def cache_key(self, model_id: str) -> str | None:
        return cache_key(model_id, self.prompt_ids, self.params)

    def seen(self, item: int) -> bool:
        self.output_ids.append(item)
        return True

    def usage(self) -> tuple[int | None, int | None]:
        return len(self.prompt_ids), len(self.output_ids)

    def complete(self, exhausted: bool) -> bool:
        out = self.output_ids
        if not out:
            return False
        return exhausted or out[-1] in self.params.stop_token_ids or len(out) >= self.params.max_tokens

    def to_cache(self) -> list[int]:
        return list(self.output_ids)

    def from_cache(self, stored: list[int]) -> list[int]:
        return list(stored)


class RelayJob:
    prompt_ids = None
    output_ids = None

    def __init__(self, backend: Any, kind: str, body: dict[str, Any], model: str, *, stream: bool) -> None:
        self.backend = backend
        self.kind = kind
        self.body = body
        self.model = model
        self.stream = stream
        self._usage: dict[str, Any] | None = None
        self._reply: dict[str, Any] | None = None

    async def start(self) -> AsyncIterator[dict[str, Any]]:
        if not self.stream:
            yield await self.backend.complete(self.kind, self.body, self.model)
            return
        chunks = await self.backend.open_stream(self.kind, self.body, self.model)
        try:
            async for chunk in chunks:
                yield chunk
        finally:
            close = getattr(chunks, "aclose", None)
            if close is not None:
                await close()

    def cache_key(self, model_id: str) -> str | None:
        """Deterministic (temperature 0 or a seed) non-streamed requests. No prompt text in the key."""
        if self.stream:
            return None
        raw = self.body
        temperature = raw.get("temperature", 1.0)
        if not (raw.get("seed") is not None or (isinstance(temperature, (int, float)) and temperature <= 0)):
            return None
        body = {k: v for k, v in raw.items() if k not in _NOT_CACHED_KEYS}
        try:
            canonical = json.dumps({"kind": self.kind, "model": self.model, "body": body}, sort_keys=True,
                                   ensure_ascii=False)
        except (TypeError, ValueError):
            return None
        return KEY_PREFIX + "upstream:" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()

    def seen(self, item: dict[str, Any]) -> bool:
        if isinstance(item.get("usage"), dict):
            self._usage = item["usage"]
        if not self.stream:
            self._reply = item
            return False  # a whole reply: no first token to time
        return bool(item.get("choices"))

    def usage(self) -> tuple[int | None, int | None]:
        if self._usage is None:
            return None, None
        return _int_or_none(self._usage.get("prompt_tokens")), _int_or_none(self._usage.get("completion_tokens"))

    def complete(self, exhausted: bool) -> bool:
        reply = self._reply
        return bool(reply and reply.get("choices")) and all(
            c.get("finish_reason") in _COMPLETE_FINISH for c in reply["choices"])

    def to_cache(self) -> list[int]:
        return list(json.dumps(self._reply, ensure_ascii=False).encode("utf-8"))

    def from_cache(self, stored: list[int]) -> list[dict[str, Any]]:
        return [json.loads(bytes(stored).decode("utf-8"))]


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


__all__ = ["Job", "RelayJob", "TokenJob"]
