"""The one path every request takes to an engine: response cache → admission (scheduler) → engine → observation.

Whatever the engine — token ids from the transformers engine, whole replies or chunks from vLLM or an upstream — the
work of one request is a ``Job`` (``generation/jobs.py``). ``await pipeline.open(job)`` either raises at once
(``QueueFull`` → 429, ``Draining`` → 503, ``RequestTimedOut`` → 504 when the wait for a slot is too long,
``ClientGone`` when the client left while waiting) or returns an async iterator of the engine's items. Iterate it;
close it (or let the task be cancelled) to stop early: the slot is freed and the engine's iterator closed.

- A cache hit replays the stored items without taking a slot; a job that ends complete is stored.
- The deadline, shutdown aborts and client disconnects apply while the engine works (``Scheduler.run``).
- Time to first output, token counts and the cache outcome go to the request's access-log record and the metrics.

``pipeline.generate(prompt_ids, params)`` is the token engines' shorthand (a ``TokenJob``; admission at the first
``__anext__``); ``pipeline.relay(kind, body, model, stream=…)`` the request-level engines' (a ``RelayJob``).
"""

from __future__ import annotations

import time
from typing import Any, AsyncIterator, Sequence

from gptoss_cli.serve.engines.interface import SamplingParams
from gptoss_cli.serve.generation.cache import ResponseCache
from gptoss_cli.serve.generation.jobs import Job, RelayJob, TokenJob
from gptoss_cli.serve.generation.scheduler import Scheduler
from gptoss_cli.serve.generation.record import RequestRecord, current_record


class Pipeline:
    def __init__(
        self,
        engine: Any,
        scheduler: Scheduler,
        *,
        cache: ResponseCache | None = None,
        metrics: Any = None,
        model_id: str = "model",
        log_prompts: bool = False,
    ) -> None:
        self.engine = engine
        self.scheduler = scheduler
        self.cache = cache
        self.metrics = metrics
        self.model_id = model_id
        self.log_prompts = log_prompts

    # -- the two kinds of engine ------------------------------------------------------------------------------------
    async def generate(self, prompt_ids: Sequence[int], params: SamplingParams) -> AsyncIterator[int]:
        """Generated token ids of a token-level engine, through the whole pipeline."""
        it = await self.open(TokenJob(self.engine.generate, list(prompt_ids), params))
        try:
            async for tok in it:
                yield tok
        finally:
            await _aclose(it)

    async def relay(self, kind: str, body: dict[str, Any], model: str, *, stream: bool) -> AsyncIterator[Any]:
        """A request-level engine's reply (one item) or its chunks (``stream``), through the whole pipeline."""
        return await self.open(RelayJob(self.engine, kind, body, model, stream=stream))

    # -- the pipeline -----------------------------------------------------------------------------------------------
    async def open(self, job: Job) -> AsyncIterator[Any]:
        if self.scheduler.draining:  # shutting down: refuse even what the cache could answer
            await self.scheduler.acquire()  # raises Draining (and counts the rejection)
        rec = current_record()
        if rec is not None and job.prompt_ids is not None:
            rec.prompt_tokens = len(job.prompt_ids)
            if self.log_prompts:
                rec.prompt_ids = list(job.prompt_ids)
        key = job.cache_key(self.model_id) if self.cache is not None else None
        if key is not None:
            cached = await self.cache.get(key)
            if self.metrics is not None:
                self.metrics.cache_lookup(cached is not None)
            if rec is not None:
                rec.cache_hit = cached is not None
            if cached is not None:
                return self._replay(job, job.from_cache(cached), rec)
        stop = rec.disconnected if rec is not None else None
        inner = await self.scheduler.stream(job.start, stop=stop)
        return self._observe(job, inner, key, rec)

    async def _replay(self, job: Job, items: list[Any], rec: RequestRecord | None) -> AsyncIterator[Any]:
        for item in items:
            job.seen(item)
        if rec is not None:
            rec.first_token()
        self._record(job, rec)
        for item in items:
            yield item

    async def _observe(self, job: Job, inner: AsyncIterator[Any], key: str | None,
                       rec: RequestRecord | None) -> AsyncIterator[Any]:
        start = time.perf_counter()
        first = True
        exhausted = False
        try:
            async for item in inner:
                if job.seen(item) and first:
                    first = False
                    self._first_output(rec, start)
                yield item
            exhausted = True
        finally:
            await _aclose(inner)
            prompt, completion = job.usage()
            if self.metrics is not None and (prompt or completion):
                self.metrics.tokens(prompt or 0, completion or 0)
            self._record(job, rec)
            if key is not None and self.cache is not None and job.complete(exhausted):
                await self.cache.put(key, job.to_cache())

    def _record(self, job: Job, rec: RequestRecord | None) -> None:
        if rec is None:
            return
        prompt, completion = job.usage()
        if prompt is not None:
            rec.prompt_tokens = prompt
        if completion is not None:
            rec.completion_tokens = completion
        if self.log_prompts and job.output_ids is not None:
            rec.completion_ids = list(job.output_ids)

    def _first_output(self, rec: RequestRecord | None, start: float) -> None:
        if rec is not None:
            ttft = rec.first_token()
            path = rec.path
        else:
            ttft, path = time.perf_counter() - start, "other"
        if self.metrics is not None:
            self.metrics.first_token(path, ttft)


async def _aclose(it: Any) -> None:
    close = getattr(it, "aclose", None)
    if close is not None:
        await close()


__all__ = ["Pipeline"]
