"""HTTP routes. Imported only by ``create_app`` (it imports FastAPI at module level)."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request
from starlette.background import BackgroundTask
from starlette.responses import Response, StreamingResponse

from gptoss_cli.serve.openai import sse as streaming

from gptoss_cli.serve.generation import upstream_path as upstream_app
from gptoss_cli.serve.openai.app import check_model_id, plan_request, require_info
from gptoss_cli.serve.openai.chat import (
    ChatPlan,
    ChunkMaker,
    chat_completion,
    new_id,
    outcome_chunks,
    plan_chat,
    stream_chunks,
)
from gptoss_cli.serve.openai.completions import CompletionPlan, completion_body, completion_chunks, plan_completion
from gptoss_cli.serve.errors import NotReady
from gptoss_cli.serve.generation.run import Generation, run_checked
from gptoss_cli.serve.openai.protocol import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    Completion,
    CompletionRequest,
    ErrorEnvelope,
    ModelCard,
    ModelList,
)

router = APIRouter()

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorEnvelope} for code in (400, 401, 404, 413, 429, 500, 503)
}


def _stream_doc(model: type) -> dict[int | str, dict[str, Any]]:
    return {
        200: {
            "description": "JSON, or with `stream: true` server-sent events `data: <chunk JSON>` ending with "
            f"`data: [DONE]` (chunk schema: {model.__name__}).",
            "content": {"text/event-stream": {"schema": {  # one SSE event: `data:` is a chunk's JSON or [DONE]
                "type": "object", "properties": {"data": {"type": "string"}}, "required": ["data"]}}},
        },
        **_ERRORS,
    }


def _json(model: Any) -> Response:
    return Response(model.model_dump_json(), media_type="application/json")


async def _body_size(request: Request) -> int:
    """Bytes of the request body (already read and parsed by FastAPI; a chunked body has no Content-Length)."""
    return len(await request.body())


@router.post(
    "/v1/chat/completions",
    response_model=ChatCompletion,
    responses={**_stream_doc(ChatCompletionChunk)},
    summary="Create a chat completion (harmony-rendered; reasoning, tool calls, streaming)",
)
async def chat_completions(body: ChatCompletionRequest, request: Request) -> Response:
    state = request.app.state
    if state.backend is not None:  # --engine vllm|upstream: the backend speaks Chat Completions itself
        return await upstream_app.proxy(request, "chat", body)
    plan: ChatPlan = await plan_request(plan_chat, body, state, await _body_size(request))
    tokenizer = state.model_info.tokenizer
    retries = state.settings.response_format_retries
    if not plan.stream:
        outcome = await run_checked(state.generate, tokenizer, plan.generation, plan.json_check, retries)
        return _json(chat_completion(plan, outcome, completion_id=new_id("chatcmpl"), created=int(time.time())))
    maker = ChunkMaker(plan.model)
    if plan.json_check is not None:
        outcome = await run_checked(state.generate, tokenizer, plan.generation, plan.json_check, retries)
        return _sse(outcome_chunks(outcome, maker, plan.include_usage))
    gen = Generation(state.generate, tokenizer, plan.generation)
    await gen.start()
    return _sse(stream_chunks(gen, maker, plan.include_usage), gen)


@router.post(
    "/v1/completions",
    response_model=Completion,
    responses={**_stream_doc(Completion)},
    summary="Create a text completion (the prompt is sent as one user message; text is the final answer)",
)
async def completions(body: CompletionRequest, request: Request) -> Response:
    state = request.app.state
    if state.backend is not None:
        return await upstream_app.proxy(request, "completion", body)
    plan: CompletionPlan = await plan_request(plan_completion, body, state, await _body_size(request))
    tokenizer = state.model_info.tokenizer
    if not plan.stream:
        outcome = await run_checked(state.generate, tokenizer, plan.generation, None, 0)
        return _json(completion_body(plan, outcome, completion_id=new_id("cmpl"), created=int(time.time())))
    gen = Generation(state.generate, tokenizer, plan.generation)
    await gen.start()
    return _sse(completion_chunks(gen, plan), gen)


def _sse(payloads: Any, gen: Generation | None = None) -> StreamingResponse:
    return StreamingResponse(
        streaming.frame(payloads),
        media_type=streaming.MEDIA_TYPE,
        headers=streaming.HEADERS,
        background=BackgroundTask(gen.aclose) if gen is not None else None,
    )


def _cards(state: Any) -> list[ModelCard]:
    settings = state.settings
    if state.model_info is not None:
        length = state.model_info.max_model_len
    else:
        limits = [n for n in (getattr(state.engine, "max_model_len", None), settings.max_model_len) if n]
        length = min(limits) if limits else None
    return [
        ModelCard(
            id=name,
            created=state.created,
            owned_by=settings.owned_by,
            root=settings.served_model_name,
            max_model_len=length,
            context_length=length,
        )
        for name in settings.model_names
    ]


@router.get("/v1/models", response_model=ModelList, responses=_ERRORS, summary="List the served model and aliases")
async def list_models(request: Request) -> Response:
    return _json(ModelList(data=_cards(request.app.state)))


@router.get("/v1/models/{model_id:path}", response_model=ModelCard, responses=_ERRORS, summary="Describe a model")
async def get_model(model_id: str, request: Request) -> Response:
    state = request.app.state
    check_model_id(model_id, state.settings)
    return _json(next(c for c in _cards(state) if c.id == model_id))


@router.get("/health", summary="Liveness: the process is up")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/ready", responses={503: {"model": ErrorEnvelope}}, summary="Readiness: the model is loaded")
async def ready(request: Request) -> dict[str, Any]:
    state = request.app.state
    scheduler = getattr(state, "scheduler", None)  # the load layers (serve/openai/layers.py)
    if scheduler is not None and scheduler.draining:
        raise NotReady("The server is shutting down; send new requests elsewhere.")
    if state.backend is not None:
        if not await upstream_app.backend_ready(state):
            raise NotReady("The model server behind gptoss is not answering; retry shortly.")
        return {"status": "ready", "model": state.settings.served_model_name,
                "max_model_len": state.backend.max_model_len}
    info = require_info(state)
    if info is None:  # pragma: no cover - require_info raises instead
        raise NotReady()
    return {"status": "ready", "model": state.settings.served_model_name, "max_model_len": info.max_model_len}


__all__ = ["router"]
