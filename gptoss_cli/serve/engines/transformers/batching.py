"""Batched generation: one background decode loop that steps every active request together.

Why our own loop rather than transformers' continuous batching manager (``model.init_continuous_batching``): the
manager samples from one shared random generator, so a request with a ``seed`` is not reproducible under load (our
response cache relies on it), it sizes its paged cache from system memory unless told otherwise, and it spends seconds
warming up. This loop keeps an ordinary ``DynamicCache`` of the running batch, left-padded, and

- prefills newly arrived requests together (left-padded, one forward, only the last position's logits),
- merges their cache rows into the running batch (padding the shorter side on the left),
- runs one decode step for all rows per iteration, sampling each row with its own ``RowSampler``
  (``serve/engines/transformers/sampling.py``, the same code as the single-sequence engine: one seed, one answer on either path),
- drops finished, failed or cancelled rows at once and trims leading columns that are padding in every row.

A request never fails its neighbours: a row whose sampling fails ends alone; a failed prefill fails only the
newcomers (each retried alone, so only the culprit fails) and leaves the running rows untouched. Only a failed
decode forward, which computes every row at once, fails the rows of that step.

Greedy outputs equal unbatched outputs (masked positions contribute exact zeros). Cancellation (the consumer closes
the iterator) takes effect at the next step. The KV budget (``kv_cache_bytes``) is shared as rows grow, not for their
worst case (``admission.py``): a newcomer joins while the batch with it fits; when growing rows would pass the budget
the newest are preempted and resume later, recomputed. A request that waits for KV or is preempted is told to its
consumer, which reports it to ``on_event`` (``"kv_wait"``, ``"preempted"``) in the request's own task.

Torch is imported only when the loop starts. Everything the loop touches lives on its own thread.
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import logging
import queue
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any, AsyncIterator, Callable

from gptoss_cli.serve.engines.interface import SamplingParams, Tokenizer
from gptoss_cli.serve.engines.transformers.admission import KVSizing, admit, kv_sizing, newest_first
from gptoss_cli.serve.engines.transformers.handoff import items_until

log = logging.getLogger("gptoss.serve.batching")

_END = object()


class BatchStepFailed(RuntimeError):
    """The model step failed (out of memory, bad input); the requests of that batch end with this error."""


@dataclass(frozen=True)
class _Note:
    """Something the consumer reports for its request (``BatchingEngine.on_event``), not a token."""

    name: str


_ARRIVAL = itertools.count()


@dataclass(eq=False)
class _Request:
    prompt: list[int]
    params: SamplingParams
    push: Callable[[Any], None]  # thread-safe delivery of a token id, _END or an exception
    loop: Any = None  # the consumer's event loop and queue: tokens of one step go over in one call per loop
    inbox: Any = None
    cancelled: threading.Event = field(default_factory=threading.Event)
    generated: list[int] = field(default_factory=list)
    sampler: Any = None  # serve/sampling.RowSampler, created on the loop thread at its first prefill
    position: int = 0  # real tokens already in the cache
    failed: bool = False  # its own step failed (sampling, prefill): it leaves the batch, the others go on
    seq: int = field(default_factory=lambda: next(_ARRIVAL))  # arrival order: the newest is preempted first
    waited: bool = False  # held back for KV at least once (reported once)


class BatchingEngine:
    """An ``Engine`` that batches concurrent requests over one transformers causal LM.

    Build it from a loaded model (``BatchingEngine(model, tokenizer, max_model_len=...)``) or around another engine
    whose ``load()`` provides ``.model`` (``BatchingEngine.wrap(engine, ...)``).
    """

    def __init__(
        self,
        model: Any = None,
        tokenizer: Tokenizer | None = None,
        *,
        max_model_len: int = 4096,
        max_batch: int = 4,
        kv_cache_bytes: int = 1 << 30,
        max_prefill_tokens: int = 4096,
        prefill_chunk: int = 256,
        inner: Any = None,
        description: str | None = None,
        on_step: Callable[[int, float], None] | None = None,
        on_event: Callable[[str], None] | None = None,
    ) -> None:
        self.model = model
        self.inner = inner
        self.tokenizer = tokenizer if tokenizer is not None else getattr(inner, "tokenizer", None)
        self.max_model_len = int(getattr(inner, "max_model_len", max_model_len) if inner else max_model_len)
        self.max_batch = max(1, int(max_batch))
        self.kv_cache_bytes = int(kv_cache_bytes)
        self.max_prefill_tokens = max(1, int(max_prefill_tokens))
        self.prefill_chunk = max(1, int(prefill_chunk))
        self.default_stop_token_ids: tuple[int, ...] = ()
        base = description or getattr(inner, "description", None) or "transformers"
        self.description = f"{base} (batched, up to {self.max_batch} at once)"
        self.on_step = on_step  # (batch rows, step seconds) after every forward; for metrics
        self.on_event = on_event  # ("kv_wait" | "preempted"), called in the request's task; for metrics + its record
        self._kv_reserved = 0  # bytes of KV the running batch holds (rows × padded length), for kv_cache_usage
        self.device = str(getattr(inner, "device", "cpu"))
        self.sizing: KVSizing | None = None
        self._incoming: queue.SimpleQueue[_Request] = queue.SimpleQueue()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False

    @classmethod
    def wrap(cls, engine: Any, **kwargs: Any) -> "BatchingEngine":
        return cls(inner=engine, **kwargs)

    # -- Engine protocol -------------------------------------------------------------------------------------------
    def load(self) -> None:
        if self.inner is not None:
            self.inner.load()
            self.model = getattr(self.inner, "model", None) or getattr(self.inner, "_model", None)
            self.tokenizer = getattr(self.inner, "tokenizer", self.tokenizer)
            self.max_model_len = int(getattr(self.inner, "max_model_len", self.max_model_len))
            self.device = str(getattr(self.inner, "device", "cpu"))
            self.default_stop_token_ids = tuple(getattr(self.inner, "default_stop_token_ids", ()) or ())
            base = getattr(self.inner, "description", "transformers")
            self.description = f"{base} (batched, up to {self.max_batch} at once)"
        if self.model is None:
            raise BatchStepFailed("the batching engine needs a loaded transformers model")
        self._start()

    def close(self) -> None:
        self._closed = True
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        if self.inner is not None:
            self.inner.close()

    async def generate(self, prompt_ids: list[int], params: SamplingParams) -> AsyncIterator[int]:
        if self._closed:
            raise BatchStepFailed("the engine is shut down")
        if not prompt_ids:
            raise ValueError("the prompt is empty")
        if len(prompt_ids) >= self.max_model_len:
            raise ValueError(f"the prompt has {len(prompt_ids)} tokens; the context length is {self.max_model_len}")
        if not params.stop_token_ids and self.default_stop_token_ids:
            params = replace(params, stop_token_ids=self.default_stop_token_ids)
        if self._thread is None:
            self._start()
        loop = asyncio.get_running_loop()
        inbox: asyncio.Queue[Any] = asyncio.Queue()

        def push(item: Any) -> None:
            try:
                loop.call_soon_threadsafe(inbox.put_nowait, item)
            except RuntimeError:  # the event loop is gone (shutdown); nobody is listening
                pass

        req = _Request(prompt=list(prompt_ids), params=params, push=push, loop=loop, inbox=inbox)
        self._incoming.put(req)
        self._wake.set()
        try:
            async for item in items_until(inbox, _END):
                if type(item) is _Note:
                    if self.on_event is not None:
                        self.on_event(item.name)
                    continue
                yield item
        finally:
            req.cancelled.set()
            self._wake.set()

    # -- the loop thread ------------------------------------------------------------------------------------------
    def _start(self) -> None:
        if self._thread is not None:
            return
        import torch

        dtype = getattr(self.model, "dtype", None)
        width = torch.finfo(dtype).bits // 8 if isinstance(dtype, torch.dtype) and dtype.is_floating_point else 2
        self.sizing = kv_sizing(self.model.config, width, self.kv_cache_bytes, self.max_model_len)
        if self.sizing.rows_at_full_length() < 1:
            log.warning("kv cache budget %d bytes holds no full-length sequence (%d tokens); a request that grows "
                        "past it runs alone (newer ones wait or are preempted)", self.kv_cache_bytes,
                        self.max_model_len)
        # Python's switch interval stays as it is: torch lets go of the GIL in every operator, so the event loop
        # gets it within ~0.1 ms anyway, and a shorter interval only adds forced hand-overs (measured: -10..15 %
        # tokens/s at 8 streams with 0.5 ms, no gain in time to first token).
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="gptoss-batching", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import torch

        from gptoss_cli.serve.engines.transformers.batch_state import BatchState

        state = BatchState(self.model)
        pending: list[_Request] = []
        with torch.inference_mode():
            while not self._stop.is_set():
                while True:
                    try:
                        pending.append(self._incoming.get_nowait())
                    except queue.Empty:
                        break
                pending[:] = [r for r in pending if not self._drop_if_cancelled(r)]
                state.drop_finished(self._finished)
                admitted = self._admit(pending, state)
                if not admitted and not state.rows:
                    self._wake.wait(timeout=0.5)
                    self._wake.clear()
                    continue
                try:
                    self._step(state, admitted, pending)
                except Exception as exc:  # noqa: BLE001 - one bad step must not kill the server's loop
                    # one forward for all rows failed: its rows cannot be told apart (nor their cache trusted)
                    rows = [r for r in dict.fromkeys(list(state.rows) + admitted)
                            if not self._finished(r) and r not in pending]  # not those preempted before it
                    log.exception("batched decode step failed; failing its %d requests", len(rows))
                    self._fail(rows, exc)
                    state.reset()
            for r in list(state.rows) + pending:
                r.push(BatchStepFailed("the engine is shutting down"))
            state.reset()

    @staticmethod
    def _drop_if_cancelled(r: _Request) -> bool:
        if r.cancelled.is_set():
            r.push(_END)
            return True
        return False

    def _admit(self, pending: list[_Request], state: Any) -> list[_Request]:
        admitted, held = admit(pending, len(state.rows), state.length, self.sizing, max_batch=self.max_batch,
                               max_prefill_tokens=self.max_prefill_tokens)
        if held is not None:  # it waits for KV, and so does everyone queued behind it
            for r in pending:
                if not r.waited:
                    r.waited = True
                    r.push(_Note("kv_wait"))
        return admitted

    def _step(self, state: Any, admitted: list[_Request], pending: list[_Request]) -> None:
        t0 = time.perf_counter()
        if admitted:
            self._prefill(state, admitted)
        state.drop_finished(self._finished)
        self._preempt(state, pending)
        if state.rows:
            tokens = state.decode()
            self._deliver(state.rows, tokens)
            state.drop_finished(self._finished)
        self._kv_reserved = self.sizing.cost(len(state.rows), state.length)
        if self.on_step is not None:
            self.on_step(len(state.rows), time.perf_counter() - t0)

    def _preempt(self, state: Any, pending: list[_Request]) -> None:
        """Make room for the next decode step: the newest rows leave the batch (their KV is dropped) and wait at
        the head of the queue, in arrival order; they resume where they were (``admission.py``)."""
        victims = newest_first(state.rows, state.length, self.sizing)
        if not victims:
            return
        state.drop_finished(lambda r: r in victims)
        for r in victims:
            log.info("kv cache budget full: request preempted after %d tokens; it resumes when there is room",
                     len(r.generated))
            r.push(_Note("preempted"))
            bisect.insort(pending, r, key=lambda q: q.seq)

    def kv_cache_usage(self) -> float | None:
        """The share of the KV budget the running batch holds (0..1; a lone row past the budget reads 1), for
        /metrics; None before loading."""
        if self.sizing is None or not self.sizing.budget_bytes:
            return None
        return min(1.0, self._kv_reserved / self.sizing.budget_bytes)

    def _prefill(self, state: Any, admitted: list[_Request]) -> None:
        """Prefill the newcomers and merge them into the batch. A failed prefill leaves the running rows alone
        (their cache is untouched); with several newcomers each is retried alone, so only the culprit fails."""
        groups = [admitted]
        while groups:
            group = groups.pop(0)
            try:
                first = state.prefill(group, self.prefill_chunk)
            except Exception as exc:  # noqa: BLE001 - this group's failure, not the batch's
                state.discard_pending()
                if len(group) > 1:
                    groups = [[r] for r in group] + groups
                    continue
                log.exception("prefill failed; failing that request")
                self._fail(group, exc)
                continue
            self._deliver(group, first)
            state.merge_pending(keep=lambda r: not self._finished(r))

    def _fail(self, rows: list[_Request], exc: BaseException) -> None:
        from gptoss_cli.serve.errors import APIError

        # an error written for the client (NaN logits) reaches it as it is; anything else stays generic
        failure = exc if isinstance(exc, APIError) else BatchStepFailed(f"generation failed: {type(exc).__name__}")
        for r in rows:
            r.failed = True
            r.push(failure)

    def _deliver(self, rows: list[_Request], tokens: list[Any]) -> None:
        """Hand each row its token (or its own failure); one ``call_soon_threadsafe`` per event loop and step (not
        per token), so the server's loop wakes — and takes the GIL from this thread — once per step."""
        by_loop: dict[Any, list[tuple[Any, Any]]] = {}
        for r, tok in zip(rows, tokens):
            if r.cancelled.is_set() or self._finished(r):
                continue
            if isinstance(tok, BaseException):
                log.error("sampling failed for one request (%s); the others go on", type(tok).__name__)
                self._fail([r], tok)
                continue
            r.generated.append(tok)
            batch = by_loop.setdefault(r.loop, [])
            batch.append((r.inbox, tok))
            if self._finished(r):
                batch.append((r.inbox, _END))
        for loop, items in by_loop.items():
            try:
                loop.call_soon_threadsafe(_hand_over, items)
            except RuntimeError:  # that event loop is closed: nobody is listening
                pass

    def _finished(self, r: _Request) -> bool:
        if r.cancelled.is_set() or r.failed:
            return True
        if not r.generated:
            return False
        return (
            r.generated[-1] in r.params.stop_token_ids
            or len(r.generated) >= r.params.max_tokens
            or len(r.prompt) + len(r.generated) >= self.max_model_len
        )


def _hand_over(items: list[tuple[Any, Any]]) -> None:
    for inbox, item in items:
        inbox.put_nowait(item)


__all__ = ["BatchingEngine", "BatchStepFailed", "KVSizing", "kv_sizing"]
