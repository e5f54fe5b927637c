"""The front for token engines: OpenAI request → harmony prompt → the pipeline → harmony parse → OpenAI reply.

``chat`` / ``completion`` return the reply body (a pydantic model) or an ``EventStream`` of chunks; the endpoint
modules turn either into a response. Streams start only after the first token is there, so failures before any
output (overload, engine error, not ready) still get their HTTP status.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Callable

from gptoss_cli.serve.generation.run import Generation, run_checked
from gptoss_cli.serve.openai.chat import ChunkMaker, chat_completion, new_id, outcome_chunks, plan_chat, stream_chunks
from gptoss_cli.serve.openai.completions import completion_body, completion_chunks, plan_completion
from gptoss_cli.serve.openai.protocol import ChatCompletionRequest, CompletionRequest
from gptoss_cli.serve.openai.sse import EventStream
from gptoss_cli.serve.openai.state import ServerState

_THREAD_PLAN_BYTES = 64 * 1024  # render + tokenize bigger request bodies in a worker thread


async def plan_request(fn: Callable[..., Any], body: Any, server: ServerState, body_bytes: int) -> Any:
    """Render + tokenize; big requests (by the size of the body actually read, chunked ones too) go to a worker
    thread so the event loop keeps answering and streaming others (the tokenizer releases the GIL there)."""
    info = server.model_info()
    if body_bytes > _THREAD_PLAN_BYTES:
        return await asyncio.to_thread(fn, body, server.settings, info)
    return fn(body, server.settings, info)


async def chat(server: ServerState, body: ChatCompletionRequest, request: Any) -> Any:
    plan = await plan_request(plan_chat, body, server, await _body_size(request))
    tokenizer = server.model_info().tokenizer
    generate = server.pipeline.generate
    retries = server.settings.response_format_retries
    if not plan.stream:
        outcome = await run_checked(generate, tokenizer, plan.generation, plan.json_check, retries)
        return chat_completion(plan, outcome, completion_id=new_id("chatcmpl"), created=int(time.time()))
    maker = ChunkMaker(plan.model)
    if plan.json_check is not None:  # a JSON answer is generated whole, checked, then sent as chunks
        outcome = await run_checked(generate, tokenizer, plan.generation, plan.json_check, retries)
        return EventStream(outcome_chunks(outcome, maker, plan.include_usage))
    gen = Generation(generate, tokenizer, plan.generation)
    await gen.start()
    return EventStream(stream_chunks(gen, maker, plan.include_usage), gen.aclose)


async def completion(server: ServerState, body: CompletionRequest, request: Any) -> Any:
    plan = await plan_request(plan_completion, body, server, await _body_size(request))
    tokenizer = server.model_info().tokenizer
    generate = server.pipeline.generate
    if not plan.stream:
        outcome = await run_checked(generate, tokenizer, plan.generation, None, 0)
        return completion_body(plan, outcome, completion_id=new_id("cmpl"), created=int(time.time()))
    gen = Generation(generate, tokenizer, plan.generation)
    await gen.start()
    return EventStream(completion_chunks(gen, plan), gen.aclose)


async def _body_size(request: Any) -> int:
    """Bytes of the request body (already read and parsed by FastAPI; a chunked body has no Content-Length)."""
    return len(await request.body())


def context_length(server: ServerState) -> int | None:
    """The context length /v1/models reports: the loaded model's, else the configured or engine limit."""
    if server.status.model_info is not None:
        return server.status.model_info.max_model_len
    limits = [n for n in (getattr(server.engine, "max_model_len", None), server.settings.max_model_len) if n]
    return min(limits) if limits else None


async def ready(server: ServerState) -> dict[str, Any]:
    """Ready: the served name, the context and, for an MXFP4 checkpoint, the path its experts really took
    (``native``, ``packed`` or ``dequantise``; see serve/engines/transformers/plan.py)."""
    info = server.model_info()
    body: dict[str, Any] = {"status": "ready", "model": server.settings.served_model_name,
                            "max_model_len": info.max_model_len}
    engine = getattr(server.engine, "inner", None) or server.engine
    if getattr(engine, "mxfp4", None):
        body["mxfp4"] = engine.mxfp4
    return body


__all__ = ["chat", "completion", "context_length", "plan_request", "ready"]
