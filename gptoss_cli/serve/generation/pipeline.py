"""The one path every generation takes: response cache → scheduler (admission, deadline, cancel) → engine.

It wraps the app's ``generate`` function (``app.state.generate``: ``(prompt_ids, params) -> AsyncIterator[int]``,
by default the engine's own stream) and is itself such a function (``pipeline.generate``).

``await pipeline.open(prompt_ids, params)`` either raises at once (``Overloaded`` → 429, ``Draining`` → 503; also
``RequestTimedOut`` → 504 when the wait for a slot is too long) or returns an async iterator of generated token ids.
Iterate it; close it (or let the task be cancelled) to stop early. A cache hit replays the stored token ids without
taking a slot. A generation that ends normally (stop token, max_tokens or the iterator exhausted) is stored when the
request is deterministic. Token counts, time to first token and the cache outcome go to the request's access-log
record and to the metrics.
"""

from __future__ import annotations

import time
from typing import Any, AsyncIterator, Callable, Sequence

from gptoss_cli.serve.openai.accesslog import RequestRecord, current_record
from gptoss_cli.serve.generation.cache import ResponseCache, cache_key
from gptoss_cli.serve.engines.interface import SamplingParams
from gptoss_cli.serve.generation.scheduler import Scheduler

GenerateFn = Callable[[list[int], SamplingParams], AsyncIterator[int]]


class GenerationPipeline:
    def __init__(
        self,
        generate: GenerateFn,
        scheduler: Scheduler,
        *,
        cache: ResponseCache | None = None,
        metrics: Any = None,
        model_id: str = "model",
        log_prompts: bool = False,
    ) -> None:
        self.inner = generate
        self.scheduler = scheduler
        self.cache = cache
        self.metrics = metrics
        self.model_id = model_id
        self.log_prompts = log_prompts

    async def open(self, prompt_ids: Sequence[int], params: SamplingParams) -> AsyncIterator[int]:
        if self.scheduler.draining:  # shutting down: refuse even what the cache could answer
            await self.scheduler.acquire()  # raises Draining (and counts the rejection)
        rec = current_record()
        prompt = list(prompt_ids)
        if rec is not None:
            rec.prompt_tokens = len(prompt)
            if self.log_prompts:
                rec.prompt_ids = prompt
        key = cache_key(self.model_id, prompt, params) if self.cache is not None else None
        if key is not None:
            cached = await self.cache.get(key)
            if self.metrics is not None:
                self.metrics.cache_lookup(cached is not None)
            if rec is not None:
                rec.cache_hit = cached is not None
            if cached is not None:
                return self._replay(cached, rec)
        stop = rec.disconnected if rec is not None else None
        inner = await self.scheduler.stream(lambda: self.inner(prompt, params), stop=stop)
        return self._observe(inner, prompt, params, key, rec)

    async def generate(self, prompt_ids: Sequence[int], params: SamplingParams) -> AsyncIterator[int]:
        """Engine-shaped convenience (admission happens at the first ``__anext__``)."""
        it = await self.open(prompt_ids, params)
        try:
            async for tok in it:
                yield tok
        finally:
            await _aclose(it)

    async def _replay(self, tokens: list[int], rec: RequestRecord | None) -> AsyncIterator[int]:
        if rec is not None:
            rec.first_token()
            rec.completion_tokens = len(tokens)
            if self.log_prompts:
                rec.completion_ids = list(tokens)
        for tok in tokens:
            yield tok

    async def _observe(
        self,
        inner: AsyncIterator[int],
        prompt: list[int],
        params: SamplingParams,
        key: str | None,
        rec: RequestRecord | None,
    ) -> AsyncIterator[int]:
        produced: list[int] = []
        start = time.perf_counter()
        exhausted = False
        try:
            async for tok in inner:
                if not produced:
                    self._first_token(rec, start)
                produced.append(tok)
                yield tok
            exhausted = True
        finally:
            await _aclose(inner)
            complete = exhausted or _ended_normally(produced, params)
            if self.metrics is not None:
                self.metrics.tokens(len(prompt), len(produced))
            if rec is not None:
                rec.completion_tokens = len(produced)
                if self.log_prompts:
                    rec.completion_ids = produced
            if complete and key is not None and self.cache is not None and produced:
                await self.cache.put(key, produced)

    def _first_token(self, rec: RequestRecord | None, start: float) -> None:
        if rec is not None:
            ttft = rec.first_token()
            path = rec.path
        else:
            ttft, path = time.perf_counter() - start, "other"
        if self.metrics is not None:
            self.metrics.first_token(path, ttft)


def _ended_normally(produced: list[int], params: SamplingParams) -> bool:
    if not produced:
        return False
    return produced[-1] in params.stop_token_ids or len(produced) >= params.max_tokens


async def _aclose(it: Any) -> None:
    close = getattr(it, "aclose", None)
    if close is not None:
        await close()


__all__ = ["GenerationPipeline"]
