"""The app side of request-level backends (``--engine vllm|upstream``): how a ``ChatBackend`` sits behind the front.

``create_app`` keeps a backend on ``app.state.backend`` (``None`` for token-level engines). Then:

- ``start_backend(app, on_failure)`` (lifespan): starts it (the vLLM child, or the upstream lookup), hooks its
  observations into the metrics (``gptoss_upstream_duration_seconds``, time to first token, token counts) and marks
  the app ready; a vLLM child that keeps dying calls ``on_failure`` so the server exits cleanly.
- ``proxy(request, kind, typed_body)`` (the chat / completions routes): the body was validated by the route and the
  model name checked; the client's raw JSON (unknown fields included) goes to the backend under the same admission
  control as local generation (the scheduler: 429 when full, deadline → 504, client gone → the upstream request is
  cancelled), deterministic non-streamed replies go through the response cache, and streams are framed by
  ``streaming.frame`` as they arrive.
- ``backend_ready(state)`` (``/ready``): the backend answers right now.

FastAPI/Starlette are imported inside the functions that need them.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from typing import Any, AsyncIterator, Callable

from gptoss_cli.errors import CouldNotRun
from gptoss_cli.serve.openai.accesslog import current_record
from gptoss_cli.serve.generation.cache import KEY_PREFIX
from gptoss_cli.serve.errors import APIError, NotReady, api_error_for
from gptoss_cli.serve.openai.params import resolve_model
from gptoss_cli.serve.engines.upstream.backend import Observation

log = logging.getLogger("gptoss.serve")

_NOT_CACHED_KEYS = ("stream", "stream_options", "user", "model")


def is_backend(engine: Any) -> bool:
    """Whether ``engine`` answers whole requests (``ChatBackend``) rather than token ids (``Engine``)."""
    return callable(getattr(engine, "open_stream", None)) and callable(getattr(engine, "complete", None))


async def start_backend(app: Any, on_failure: Callable[[BaseException], None] | None = None) -> None:
    state = app.state
    backend = state.backend
    metrics = getattr(state, "metrics", None)
    if metrics is not None:
        backend.observe = _metrics_observer(metrics)
    if on_failure is not None and hasattr(backend, "on_failure"):
        backend.on_failure = lambda reason: on_failure(BackendFailed(f"the model server behind gptoss failed: {reason}"))
    started = time.perf_counter()
    await backend.start()
    if metrics is not None and hasattr(metrics, "model_load"):
        metrics.model_load.set(time.perf_counter() - started)


class BackendFailed(CouldNotRun):
    """The backend behind the front is gone for good (the vLLM child kept dying): the server exits with code 3."""


async def backend_ready(state: Any) -> bool:
    return bool(state.ready) and await state.backend.ready()


def _metrics_observer(metrics: Any) -> Callable[[Observation], None]:
    from prometheus_client import Histogram

    from gptoss_cli.serve.generation.metrics import LATENCY_BUCKETS

    upstream = Histogram("gptoss_upstream_duration_seconds", "Time the backend behind the front took, by outcome",
                         ["kind", "stream", "status"], buckets=LATENCY_BUCKETS, registry=metrics.registry)
    first = Histogram("gptoss_upstream_first_byte_seconds", "Request sent to the backend's first byte",
                      ["kind", "stream"], buckets=LATENCY_BUCKETS, registry=metrics.registry)

    def observe(o: Observation) -> None:
        stream = "true" if o.stream else "false"
        upstream.labels(kind=o.kind, stream=stream, status=str(o.status)).observe(o.total_s)
        if o.first_byte_s is not None:
            first.labels(kind=o.kind, stream=stream).observe(o.first_byte_s)
        if o.status == 200 and o.usage:
            metrics.tokens(int(o.usage.get("prompt_tokens") or 0), int(o.usage.get("completion_tokens") or 0))

    return observe


async def proxy(request: Any, kind: str, typed_body: Any) -> Any:
    """Answer one chat/completions request through the backend (JSON or SSE)."""
    try:
        return await _proxy(request, kind, typed_body)
    except APIError:
        raise
    except Exception as exc:  # the scheduler's refusals carry their own status (429, 503, 504)
        mapped = api_error_for(exc)
        if mapped is None:
            raise
        raise mapped from None


async def _proxy(request: Any, kind: str, typed_body: Any) -> Any:
    from starlette.responses import Response, StreamingResponse

    from gptoss_cli.serve.openai import sse as streaming

    state = request.app.state
    if not state.ready:
        raise NotReady("The model server behind gptoss is not ready; retry shortly." if not state.load_error
                       else "The model server behind gptoss failed to start; see the server log.")
    model = resolve_model(getattr(typed_body, "model", None), state.settings)
    raw = await request.json()
    rec = current_record()
    stop = rec.disconnected if rec is not None else None
    if not raw.get("stream"):
        reply = await _complete(state, kind, raw, model, stop)
        _record_usage(rec, reply.get("usage"))
        return Response(json.dumps(reply, ensure_ascii=False), media_type="application/json")
    scheduler = getattr(state, "scheduler", None)
    lease = await scheduler.acquire(stop=stop) if scheduler is not None else None
    try:
        chunks = await state.backend.open_stream(kind, raw, model)
    except BaseException:
        if lease is not None:
            lease.release()
        raise
    if lease is not None:
        chunks = scheduler.run(lease, chunks, stop)
    return StreamingResponse(streaming.frame(_observed(chunks, rec)), media_type=streaming.MEDIA_TYPE,
                             headers=streaming.HEADERS)


async def _complete(state: Any, kind: str, raw: dict[str, Any], model: str, stop: Any) -> dict[str, Any]:
    cache = getattr(state, "cache", None)
    key = _cache_key(kind, raw, model) if cache is not None else None
    metrics = getattr(state, "metrics", None)
    if key is not None:
        hit = await cache.get(key)
        if metrics is not None:
            metrics.cache_lookup(hit is not None)
        rec = current_record()
        if rec is not None:
            rec.cache_hit = hit is not None
        if hit is not None:
            return json.loads(bytes(hit).decode("utf-8"))
    scheduler = getattr(state, "scheduler", None)
    if scheduler is None:
        return await state.backend.complete(kind, raw, model)
    lease = await scheduler.acquire(stop=stop)
    try:
        reply = await _until_done(state.backend.complete(kind, raw, model), lease, stop, scheduler)
    finally:
        lease.release()
    if key is not None and reply["choices"] and all(c.get("finish_reason") in ("stop", "tool_calls", "length")
                                                    for c in reply["choices"]):
        await cache.put(key, list(json.dumps(reply, ensure_ascii=False).encode("utf-8")))
    return reply


async def _until_done(coro: Any, lease: Any, stop: Any, scheduler: Any) -> Any:
    """Run ``coro`` until it finishes, the deadline passes, shutdown aborts it or the client goes away."""
    from gptoss_cli.serve.generation.scheduler import Aborted, ClientGone, RequestTimedOut

    task = asyncio.ensure_future(coro)
    watch = {task, lease.aborted} | ({stop} if stop is not None else set())
    left = lease.remaining()
    done, _ = await asyncio.wait(watch, timeout=None if left == float("inf") else max(0.0, left),
                                 return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        return task.result()
    task.cancel()
    try:
        await task
    except BaseException:  # noqa: BLE001 - we are replacing it with our own error
        pass
    if lease.aborted.done():
        scheduler.on_event("aborted")
        raise Aborted()
    if stop is not None and stop.done():
        scheduler.on_event("cancelled")
        raise ClientGone()
    scheduler.on_event("timed_out")
    raise RequestTimedOut(scheduler.request_timeout or 0.0, "waiting for the model server")


async def _observed(chunks: AsyncIterator[dict[str, Any]], rec: Any) -> AsyncIterator[dict[str, Any]]:
    first = True
    try:
        async for chunk in chunks:
            if first and rec is not None and chunk.get("choices"):
                first = False
                rec.first_token()
            if chunk.get("usage"):
                _record_usage(rec, chunk["usage"])
            yield chunk
    except APIError:
        raise
    except Exception as exc:  # a deadline or shutdown in the middle of the stream: an envelope, not a 500
        mapped = api_error_for(exc)
        if mapped is None:
            raise
        raise mapped from None
    finally:
        close = getattr(chunks, "aclose", None)
        if close is not None:
            await close()


def _record_usage(rec: Any, usage: Any) -> None:
    if rec is not None and isinstance(usage, dict):
        rec.prompt_tokens = usage.get("prompt_tokens")
        rec.completion_tokens = usage.get("completion_tokens")


def _cache_key(kind: str, raw: dict[str, Any], model: str) -> str | None:
    """A key for a deterministic request (temperature 0 or a seed); None otherwise. No prompt text in the key."""
    temperature = raw.get("temperature", 1.0)
    if not (raw.get("seed") is not None or (isinstance(temperature, (int, float)) and temperature <= 0)):
        return None
    body = {k: v for k, v in raw.items() if k not in _NOT_CACHED_KEYS}
    try:
        canonical = json.dumps({"kind": kind, "model": model, "body": body}, sort_keys=True, ensure_ascii=False)
    except (TypeError, ValueError):
        return None
    return KEY_PREFIX + "upstream:" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()


__all__ = ["BackendFailed", "backend_ready", "is_backend", "proxy", "start_backend"]
