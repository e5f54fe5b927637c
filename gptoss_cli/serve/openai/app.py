"""``create_app(settings, engine)``: the OpenAI-compatible FastAPI application around one engine.

It builds the ``ServerState`` once (``openai/state.py``: scheduler, cache, metrics and the one pipeline every request
takes), keeps it on ``app.state.server``, and adds, outermost first: the access log (``openai/accesslog.py``), the
journal (``openai/journal_middleware.py``, with ``--journal``), the no-reasoning mount (``openai/no_reasoning.py``),
the API-key and body-size guard (``openai/guard.py``), then one router per endpoint (``openai/endpoints/``) and the
error handlers (``openai/handlers.py``).

The engine starts in the lifespan handler: a token engine's ``load()`` in a daemon thread (``/ready`` is 503 until
it ends), a request-level engine's ``start()`` on the loop. ``on_ready`` / ``on_load_error`` are called on the event
loop when that ends. FastAPI and Starlette are imported inside ``create_app``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Callable, Sequence

from gptoss_cli.serve.openai.params import model_info
from gptoss_cli.serve.openai.state import ServerState, build_state
from gptoss_cli.serve.settings import ServeSettings

log = logging.getLogger("gptoss.serve")


def create_app(
    settings: ServeSettings,
    engine: Any,
    *,
    metrics: Any = None,
    on_ready: Callable[[], None] | None = None,
    on_load_error: Callable[[BaseException], None] | None = None,
    emit_access_log: Callable[[str], None] | None = None,
) -> Any:
    """Build the app. ``metrics``: the ``ServeMetrics`` the engine's hooks already report to (else a new one);
    ``emit_access_log``: where access-log lines go (default: the ``gptoss.access`` logger on stderr)."""
    import importlib

    from fastapi import FastAPI

    from gptoss_cli.serve.openai import handlers, openapi
    from gptoss_cli.serve.openai.accesslog import AccessLogMiddleware, configure_access_logger
    from gptoss_cli.serve.openai.endpoints import ROUTERS
    from gptoss_cli.serve.openai.guard import GuardMiddleware
    from gptoss_cli.serve.openai.journal_middleware import JournalMiddleware
    from gptoss_cli.serve.openai.no_reasoning import NoReasoningMiddleware

    server = build_state(settings, engine, metrics)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        _journal_run(server, started=True)
        task = asyncio.create_task(_start(server, on_ready, on_load_error))
        try:
            yield
        finally:
            await _stop(server, task)
            _journal_run(server, started=False)

    app = FastAPI(
        title="gptoss",
        summary="OpenAI-compatible, harmony-aware server for gpt-oss",
        version=_version(),
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.server = server
    handlers.install(app)
    app.add_middleware(GuardMiddleware, api_key=settings.api_key, max_body_bytes=settings.max_body_bytes,
                       keys=server.keys, journal=server.journal)
    app.add_middleware(NoReasoningMiddleware)  # /no-reasoning/v1/* = /v1/* minus reasoning
    if server.journal is not None:  # one-piece replies are journaled before they are sent
        app.add_middleware(JournalMiddleware, journal=server.journal)
    if emit_access_log is None:
        configure_access_logger()
    app.add_middleware(AccessLogMiddleware, fmt=settings.log_format, log_prompts=settings.log_prompts,
                       metrics=server.metrics, decode=_decoder(server), emit=emit_access_log,
                       on_finish=_after_request(server))  # outermost
    for name in ROUTERS:
        app.include_router(importlib.import_module(f"gptoss_cli.serve.openai.endpoints.{name}").router)
    openapi.install(app, bearer=server.keys is not None)
    return app


def _journal_run(server: ServerState, *, started: bool) -> None:
    """The journal's ``start`` record when the server starts, its ``stop`` record when it stops."""
    if server.journal is None:
        return
    if not started:
        server.journal.stopped()
        return
    keys = server.keys.named if server.keys is not None else 0
    server.journal.started(version=_version(), model=server.settings.served_model_name,
                           engine=server.settings.engine, keys=keys)


def _after_request(server: ServerState) -> list[Callable[[Any], None]]:
    """Per-key usage (tokens spent against tpm, per-key metrics), then the journal's record."""
    hooks: list[Callable[[Any], None]] = [server.quota.finished] if server.quota is not None else []
    return hooks + ([server.journal.record] if server.journal is not None else [])


def _decoder(server: ServerState) -> Callable[[Sequence[int]], str]:
    def decode(ids: Sequence[int]) -> str:  # --log-prompts: token ids → text for the access log
        info = server.status.model_info
        return info.tokenizer.decode(ids) if info is not None else ""

    return decode


async def _start(
    server: ServerState,
    on_ready: Callable[[], None] | None,
    on_load_error: Callable[[BaseException], None] | None,
) -> None:
    status, engine = server.status, server.engine
    started = time.perf_counter()
    try:
        if server.relays:
            await engine.start()
        else:
            await _in_daemon_thread(engine.load)
            status.model_info = model_info(engine.tokenizer, engine.max_model_len, server.settings)
    except Exception as exc:  # noqa: BLE001 - reported on /ready and to the caller
        status.error = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
        log.error("model failed to load: %s", status.error)
        if on_load_error is not None:
            on_load_error(exc)
        return
    server.metrics.model_load.set(time.perf_counter() - started)
    status.gpu_metrics = _gpu_metrics(server)
    description = getattr(engine, "description", "engine")  # complete only once loaded
    server.metrics.describe(_version(), server.settings.served_model_name, description)
    status.ready = True
    log.info("model loaded: %s", description)
    if on_ready is not None:
        on_ready()


def _gpu_metrics(server: ServerState) -> Any:
    """GPU figures in /metrics when the engine runs on CUDA (NVML, sampled off the loop); None elsewhere."""
    device = str(getattr(server.engine, "device", "") or "")
    if not device.startswith("cuda"):
        return None
    from gptoss_cli.serve.generation.gpu_metrics import gpu_metrics_for

    try:
        return gpu_metrics_for(server.metrics.registry, device=device, model_name=server.settings.served_model_name,
                               kv_cache_usage=getattr(server.engine, "kv_cache_usage", None))
    except Exception:  # noqa: BLE001 - metrics must never keep the model from serving
        log.exception("gpu metrics could not start")
        return None


async def _stop(server: ServerState, task: asyncio.Task) -> None:
    loaded = server.status.ready
    server.status.ready = False
    if server.status.gpu_metrics is not None:
        server.status.gpu_metrics.close()
    if not task.done():
        task.cancel()
    if server.relays:  # stop a request-level engine even after a failed start (a vLLM child may be running)
        await server.engine.close()
    elif loaded:
        await asyncio.to_thread(server.engine.close)


async def _in_daemon_thread(fn: Callable[[], None]) -> None:
    """Run ``fn`` in a daemon thread (a load still running at shutdown must not keep the process alive)."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()

    def settle(exc: BaseException | None) -> None:
        if done.cancelled():
            return
        if exc is None:
            done.set_result(None)
        else:
            done.set_exception(exc)

    def work() -> None:
        error: BaseException | None = None
        try:
            fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the event loop
            error = exc
        try:
            loop.call_soon_threadsafe(settle, error)
        except RuntimeError:  # loop already closed: the server is gone
            pass

    threading.Thread(target=work, name="gptoss-model-load", daemon=True).start()
    await done


def _version() -> str:
    from gptoss_cli import __version__

    return __version__


__all__ = ["create_app"]
