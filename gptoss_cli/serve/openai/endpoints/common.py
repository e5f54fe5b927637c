"""What the endpoint modules share: the documented error responses and turning a front's reply into a response."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from gptoss_cli.serve.openai import sse
from gptoss_cli.serve.openai.protocol import ErrorEnvelope

ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorEnvelope} for code in (400, 401, 404, 413, 429, 500,
                                                                                      503)}


def stream_doc(model: type) -> dict[int | str, dict[str, Any]]:
    return {
        200: {
            "description": "JSON, or with `stream: true` server-sent events `data: <chunk JSON>` ending with "
            f"`data: [DONE]` (chunk schema: {model.__name__}).",
            "content": {"text/event-stream": {"schema": {  # one SSE event: `data:` is a chunk's JSON or [DONE]
                "type": "object", "properties": {"data": {"type": "string"}}, "required": ["data"]}}},
        },
        **ERRORS,
    }


def json_response(model: Any) -> Response:
    """A pydantic model or a plain dict as ``application/json``."""
    if isinstance(model, dict):
        import json

        return Response(json.dumps(model, ensure_ascii=False), media_type="application/json")
    return Response(model.model_dump_json(), media_type="application/json")


def reply(value: Any) -> Response:
    """A front's reply: an ``EventStream`` becomes server-sent events, anything else JSON."""
    if isinstance(value, sse.EventStream):
        return sse.response(value)
    return json_response(value)


__all__ = ["ERRORS", "json_response", "reply", "stream_doc"]
