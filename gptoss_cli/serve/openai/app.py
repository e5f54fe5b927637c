"""``create_app(settings, engine)``: the OpenAI-compatible FastAPI application.

State lives on ``app.state`` (no module globals):

    settings      ServeSettings
    engine        the Engine (loaded by the lifespan handler in a daemon thread; /ready is 503 until then)
    ready         True once loaded; ``load_error`` holds a one-line reason when loading failed
    model_info    ModelInfo (tokenizer, effective max_model_len, harmony stop ids) once loaded
    generate      ``(prompt_ids, SamplingParams) -> AsyncIterator[int]``: THE one path from every endpoint to the
                  model. It defaults to ``generate_tokens`` bound to this state; a scheduler, metrics, cache or
                  access log wraps or replaces it (``app.state.generate = wrap(app.state.generate)``).
    created       unix time reported by /v1/models

Routes: POST /v1/chat/completions, POST /v1/completions, GET /v1/models, GET /v1/models/{id}, GET /health
(liveness), GET /ready (readiness), /openapi.json. FastAPI and Starlette are imported inside ``create_app``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Callable

from gptoss_cli.serve.engines.interface import Engine, SamplingParams
from gptoss_cli.serve.errors import APIError, BadRequest, ModelNotFound, NotReady, RouteNotFound, api_error_for
from gptoss_cli.serve.openai.params import ModelInfo, model_info
from gptoss_cli.serve.openai.protocol import LONE_SURROGATE_ERROR
from gptoss_cli.serve.settings import ServeSettings
from gptoss_cli.serve.generation.upstream_path import is_backend, start_backend

log = logging.getLogger("gptoss.serve")

_THREAD_PLAN_BYTES = 64 * 1024  # render + tokenize bigger request bodies in a worker thread


async def generate_tokens(state: Any, prompt_ids: list[int], params: SamplingParams) -> AsyncIterator[int]:
    """The default ``app.state.generate``: readiness check, then the engine's own token stream."""
    if not state.ready:
        raise NotReady()
    tokens = state.engine.generate(prompt_ids, params)
    try:
        async for tok in tokens:
            yield tok
    finally:
        await tokens.aclose()


def create_app(
    settings: ServeSettings,
    engine: Engine,
    *,
    on_ready: Callable[[], None] | None = None,
    on_load_error: Callable[[BaseException], None] | None = None,
) -> Any:
    """Build the app. ``on_ready`` / ``on_load_error`` are called on the event loop when loading ends."""
    from fastapi import FastAPI
    from fastapi.exceptions import RequestValidationError
    from starlette.exceptions import HTTPException as StarletteHTTPException

    from gptoss_cli.serve.openai import openapi

    from gptoss_cli.serve.openai import routes
    from gptoss_cli.serve.openai.guard import GuardMiddleware
    from gptoss_cli.serve.openai.no_reasoning import NoReasoningMiddleware

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(_load(app, on_ready, on_load_error))
        app.state.load_task = task
        try:
            yield
        finally:
            loaded = app.state.ready
            app.state.ready = False
            if not task.done():
                task.cancel()
            if app.state.backend is not None:  # request-level backend: stop it even after a failed start
                await engine.close()
            elif loaded:
                await asyncio.to_thread(engine.close)

    app = FastAPI(
        title="gptoss",
        summary="OpenAI-compatible, harmony-aware server for gpt-oss",
        version=_version(),
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.backend = engine if is_backend(engine) else None  # --engine vllm|upstream (serve/generation/upstream_path.py)
    app.state.ready = False
    app.state.load_error = None
    app.state.model_info = None
    app.state.created = int(time.time())
    app.state.generate = functools.partial(generate_tokens, app.state)

    app.add_exception_handler(APIError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)
    app.add_middleware(GuardMiddleware, api_key=settings.api_key, max_body_bytes=settings.max_body_bytes)
    app.add_middleware(NoReasoningMiddleware)  # /no-reasoning/v1/* = /v1/* minus reasoning (serve/openai/no_reasoning.py)
    app.include_router(routes.router)
    openapi.install(app, bearer=settings.api_key is not None)
    return app


async def _load(
    app: Any,
    on_ready: Callable[[], None] | None,
    on_load_error: Callable[[BaseException], None] | None,
) -> None:
    state = app.state
    try:
        if state.backend is not None:
            await start_backend(app, on_load_error)
        else:
            await _in_daemon_thread(state.engine.load)
            state.model_info = model_info(state.engine.tokenizer, state.engine.max_model_len, state.settings)
    except Exception as exc:  # noqa: BLE001 - reported on /ready and to the caller
        state.load_error = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
        log.error("model failed to load: %s", state.load_error)
        if on_load_error is not None:
            on_load_error(exc)
        return
    state.ready = True
    log.info("model loaded: %s", getattr(state.engine, "description", "engine"))
    if on_ready is not None:
        on_ready()


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


def require_info(state: Any) -> ModelInfo:
    """The loaded model's info, or 503 while loading (or after a failed load)."""
    if not state.ready or state.model_info is None:
        if state.load_error:
            raise NotReady("The model failed to load; see the server log.")
        raise NotReady()
    return state.model_info


async def plan_request(fn: Callable[..., Any], body: Any, state: Any, body_bytes: int) -> Any:
    """Render + tokenize; big requests (by the size of the body actually read, chunked ones too) go to a worker
    thread so the event loop keeps answering and streaming others (the tokenizer releases the GIL there)."""
    info = require_info(state)
    if body_bytes > _THREAD_PLAN_BYTES:
        return await asyncio.to_thread(fn, body, state.settings, info)
    return fn(body, state.settings, info)


def check_model_id(model_id: str, settings: ServeSettings) -> None:
    if model_id not in settings.model_names:
        raise ModelNotFound(model_id, settings.model_names)


# ------------------------------------------------------------------------------------------------ error handlers


def _json_error(exc: APIError) -> Any:
    from starlette.responses import Response

    return Response(exc.body(), status_code=exc.status, headers=exc.headers, media_type="application/json")


async def _api_error(request: Any, exc: Exception) -> Any:
    assert isinstance(exc, APIError)
    return _json_error(exc)


async def _validation_error(request: Any, exc: Exception) -> Any:
    errors = list(getattr(exc, "errors", lambda: [])())
    if not errors:
        return _json_error(BadRequest("Invalid request."))
    first = errors[0]
    loc = [str(p) for p in first.get("loc", ()) if p != "body"]
    if first.get("type") == LONE_SURROGATE_ERROR:  # raised for the whole body: the path is in its context
        where = str((first.get("ctx") or {}).get("param") or "") or None
        return _json_error(BadRequest(str(first.get("msg", "Invalid Unicode in the request.")), param=where))
    if first.get("type") == "json_invalid":
        return _json_error(BadRequest(f"Request body is not valid JSON: {first.get('msg', '')}."))
    if not loc:
        return _json_error(BadRequest("The request body must be a JSON object (Content-Type: application/json)."))
    param = _dotted(loc) or None
    message = f"{param}: {first.get('msg', 'invalid value')}" if param else str(first.get("msg", "Invalid request"))
    if len(errors) > 1:
        message += f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
    return _json_error(BadRequest(message, param=param))


def _dotted(loc: list[str]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if part.isdigit() else (f".{part}" if out else part)
    return out


async def _http_error(request: Any, exc: Exception) -> Any:
    status = getattr(exc, "status_code", 500)
    if status == 404:
        return _json_error(RouteNotFound(f"Unknown path {request.url.path}."))
    if status == 405:
        allow = (getattr(exc, "headers", None) or {}).get("Allow") or _allowed_methods(request)
        return _json_error(RouteNotFound(f"Method {request.method} is not allowed on {request.url.path}.",
                                         code="method_not_allowed", status=405,
                                         headers={"Allow": allow} if allow else None))
    err = APIError(str(getattr(exc, "detail", "")) or "Request failed.", status=status)
    if status < 500:
        err.type = "invalid_request_error"
        err.code = None
    return _json_error(err)


def _allowed_methods(request: Any) -> str:
    """The methods the app's routes accept on this path (for the ``Allow`` header of a 405)."""
    from starlette.routing import Match

    methods: set[str] = set()
    for route in getattr(request.app, "routes", ()):
        match, _ = route.matches({**request.scope, "method": "GET"})
        if match != Match.NONE and getattr(route, "methods", None):
            methods.update(route.methods)
    methods.discard("HEAD")
    return ", ".join(sorted(methods))


async def _unexpected_error(request: Any, exc: Exception) -> Any:
    mapped = api_error_for(exc)
    if mapped is not None:
        return _json_error(mapped)
    log.exception("unexpected error on %s", request.url.path)
    return _json_error(APIError("Internal server error."))


def _version() -> str:
    from gptoss_cli import __version__

    return __version__


__all__ = ["create_app", "generate_tokens", "plan_request", "require_info"]
