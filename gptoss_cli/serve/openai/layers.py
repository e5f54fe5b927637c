"""Put the load-handling layers on an app from ``create_app``: scheduler, response cache, metrics, access log, drain.

``install(app)`` (the ``configure`` hook of ``runner.serve_app``, or called by tests) reads ``app.state.settings`` and

- wraps ``app.state.generate`` in a ``GenerationPipeline`` (cache → scheduler → the previous generate function);
- adds ``GET /metrics`` (Prometheus text, outside /v1 so the API key does not guard it; not in the OpenAPI schema);
- adds the access-log middleware as the outermost layer (it also sees 401/413 answers and client disconnects);
- sets ``app.state.drain(timeout)`` for graceful shutdown (``serve/shutdown.py``) and records the model load time.

``batching_engine(engine, settings)`` wraps the ``TransformersEngine`` (or any engine with ``supports_batching``
that exposes its transformers model as ``.model`` / ``._model`` after ``load()``) in the ``BatchingEngine`` when more
than one request may run at once.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Sequence

from gptoss_cli.serve.openai.accesslog import LOG_FORMATS, AccessLogMiddleware, configure_access_logger
from gptoss_cli.serve.generation.cache import open_cache
from gptoss_cli.serve.generation.pipeline import GenerationPipeline
from gptoss_cli.serve.generation.scheduler import Scheduler

log = logging.getLogger("gptoss.serve")


def batching_engine(engine: Any, settings: Any) -> Any:
    """``BatchingEngine.wrap(engine)`` for transformers engines when ``max_concurrency > 1``; else ``engine``."""
    from gptoss_cli.serve.engines.transformers.batching import BatchingEngine
    from gptoss_cli.serve.options import parse_size

    batchable = getattr(engine, "supports_batching", type(engine).__name__ == "TransformersEngine")
    if settings.max_concurrency <= 1 or not batchable:
        return engine
    budget = parse_size(settings.kv_cache_memory)  # checked with ServeSettings (serve/options.py)
    return BatchingEngine.wrap(engine, max_batch=settings.max_concurrency, kv_cache_bytes=budget)


def install(app: Any, *, emit_access_log: Any = None) -> Any:
    """Add the layers to ``app`` (before it starts); returns the ``GenerationPipeline``."""
    from starlette.responses import Response

    from gptoss_cli import __version__
    from gptoss_cli.serve.generation.metrics import ServeMetrics

    state = app.state
    settings = state.settings  # a ServeSettings: its options are checked when it is built
    engine = state.engine
    metrics = ServeMetrics()
    scheduler = Scheduler(
        max_concurrency=settings.max_concurrency,
        max_queue=settings.max_queue,
        request_timeout=settings.request_timeout,
        on_event=metrics.scheduler_event,
    )
    metrics.watch_scheduler(scheduler)
    if hasattr(engine, "on_step") and getattr(engine, "on_step", None) is None:
        engine.on_step = metrics.batch_step
    cache = open_cache(settings.cache_url, settings.cache)
    pipeline = GenerationPipeline(
        state.generate,
        scheduler,
        cache=cache,
        metrics=metrics,
        model_id=f"{settings.served_model_name}|{getattr(engine, 'description', '')}",
        log_prompts=settings.log_prompts,
    )
    state.generate = pipeline.generate
    state.scheduler, state.metrics, state.cache, state.pipeline = scheduler, metrics, cache, pipeline
    _time_model_load(engine, metrics, lambda: metrics.describe(
        __version__, settings.served_model_name, getattr(engine, "description", "engine")))

    async def drain(timeout: float) -> bool:
        clean = await scheduler.drain(timeout)
        if cache is not None:
            await cache.close()
        return clean

    state.drain = drain

    async def metrics_endpoint() -> Any:
        body, content_type = metrics.render()
        return Response(body, media_type=content_type.split(";")[0],
                        headers={"Content-Type": content_type})

    app.add_api_route("/metrics", metrics_endpoint, methods=["GET"], include_in_schema=False)

    def decode(ids: Sequence[int]) -> str:
        info = getattr(state, "model_info", None)
        return info.tokenizer.decode(ids) if info is not None else ""

    if emit_access_log is None:
        configure_access_logger()
    app.add_middleware(AccessLogMiddleware, fmt=settings.log_format, log_prompts=settings.log_prompts,
                       metrics=metrics, decode=decode, emit=emit_access_log)
    return pipeline


def _time_model_load(engine: Any, metrics: Any, loaded: Any) -> None:
    """Record how long ``engine.load()`` takes (the app calls it in a worker thread during startup), then
    ``loaded()`` (the engine's description is only complete once it has loaded)."""
    original = engine.load

    def timed_load() -> None:
        start = time.perf_counter()
        original()
        metrics.model_load.set(time.perf_counter() - start)
        loaded()

    try:
        engine.load = timed_load
    except AttributeError:  # a frozen engine: no load time metric
        pass


__all__ = ["batching_engine", "install"]
