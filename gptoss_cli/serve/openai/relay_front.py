"""The front for request-level engines (``--engine vllm|upstream``): the client's JSON → the pipeline → the reply.

The body was validated by the endpoint (the typed model) and the model name is checked here; the client's raw JSON
(unknown fields included) goes to the engine through the same pipeline as local generation — response cache,
admission (429), deadline (504), client disconnect (the upstream request is cancelled), metrics, access log.
Streams are relayed chunk by chunk as they arrive; the first chunk is awaited before the response starts, so an
upstream refusal still gets its HTTP status.
"""

from __future__ import annotations

from typing import Any, AsyncIterator

from gptoss_cli.serve.errors import APIError, NotReady, api_error_for
from gptoss_cli.serve.openai.params import resolve_model
from gptoss_cli.serve.openai.sse import EventStream
from gptoss_cli.serve.openai.state import ServerState


async def chat(server: ServerState, body: Any, request: Any) -> Any:
    return await _relay(server, "chat", body, request)


async def completion(server: ServerState, body: Any, request: Any) -> Any:
    return await _relay(server, "completion", body, request)


async def _relay(server: ServerState, kind: str, body: Any, request: Any) -> Any:
    status = server.status
    if not status.ready:
        raise NotReady("The model server behind gptoss failed to start; see the server log." if status.error
                       else "The model server behind gptoss is not ready; retry shortly.")
    model = resolve_model(getattr(body, "model", None), server.settings)
    raw = await request.json()
    stream = bool(raw.get("stream"))
    try:
        items = await server.pipeline.relay(kind, raw, model, stream=stream)
        try:
            first = await items.__anext__()
        except StopAsyncIteration:
            first = None
        except BaseException:
            await items.aclose()
            raise
    except APIError:
        raise
    except Exception as exc:  # the scheduler's refusals carry their own status (429, 503, 504)
        mapped = api_error_for(exc)
        if mapped is None:
            raise
        raise mapped from None
    if not stream:
        async for _ in items:  # one reply: the pipeline then records its usage and caches it
            pass
        if first is None:
            raise APIError("The model server behind gptoss sent no reply.")
        return first
    return EventStream(_chunks(first, items), items.aclose)


async def _chunks(first: dict[str, Any] | None, rest: AsyncIterator[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
    if first is not None:
        yield first
    async for chunk in rest:
        yield chunk


def context_length(server: ServerState) -> int | None:
    return getattr(server.engine, "max_model_len", None)


async def ready(server: ServerState) -> dict[str, Any]:
    if not (server.status.ready and await server.engine.ready()):
        raise NotReady("The model server behind gptoss is not answering; retry shortly.")
    return {"status": "ready", "model": server.settings.served_model_name, "max_model_len": server.engine.max_model_len}


__all__ = ["chat", "completion", "context_length", "ready"]
