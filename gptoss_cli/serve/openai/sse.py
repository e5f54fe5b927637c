"""Server-sent events framing, in one place.

Every event is exactly ``data: <one-line JSON>\\n\\n`` (LF only, no ``event:``/``id:`` lines, one ``data:`` line per
event) and the stream ends with ``data: [DONE]\\n\\n``. Dify's client silently drops a reply framed any other way
(reference/dify-api.md §5.3).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any, AsyncIterator, Awaitable, Callable

from gptoss_cli.serve.errors import APIError, EngineFailure, api_error_for

log = logging.getLogger("gptoss.serve")

DONE = b"data: [DONE]\n\n"
MEDIA_TYPE = "text/event-stream"
HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def event(payload: dict[str, Any]) -> bytes:
    """One SSE event carrying ``payload`` as compact JSON (``json.dumps`` never emits a raw newline)."""
    return b"data: " + json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n\n"


async def frame(payloads: AsyncIterator[dict[str, Any]]) -> AsyncIterator[bytes]:
    """Frame a stream of JSON payloads as SSE events, then ``[DONE]``.

    An error after the response has started can no longer change the status code: it is sent as one event holding
    the OpenAI error envelope (no ``choices``; Dify raises it as an error), followed by ``[DONE]``. Closing this
    generator (client gone) closes ``payloads`` at once, which cancels the generation behind it.
    """
    try:
        async for payload in payloads:
            yield event(payload)
    except APIError as exc:
        log.warning("stream ended by error: %s", exc.message)
        yield event(exc.envelope())
    except Exception as exc:  # noqa: BLE001 - the body must end well-formed whatever happened
        mapped = api_error_for(exc)  # a deadline or shutdown in the middle of the stream keeps its own code
        if mapped is not None:
            log.warning("stream ended by error: %s", mapped.message)
            yield event(mapped.envelope())
        else:
            log.exception("stream failed")
            yield event(EngineFailure("The model failed while generating this response.").envelope())
    finally:
        aclose = getattr(payloads, "aclose", None)
        if aclose is not None:
            await aclose()
    yield DONE


@dataclass(frozen=True)
class EventStream:
    """A streamed reply: the payloads to frame, and what to run once the response is over."""

    payloads: AsyncIterator[dict[str, Any]]
    on_close: Callable[[], Awaitable[None]] | None = None


def response(stream: EventStream) -> Any:
    """The Starlette response that sends ``stream`` as server-sent events."""
    from starlette.background import BackgroundTask
    from starlette.responses import StreamingResponse

    return StreamingResponse(frame(stream.payloads), media_type=MEDIA_TYPE, headers=HEADERS,
                             background=BackgroundTask(stream.on_close) if stream.on_close is not None else None)


__all__ = ["DONE", "HEADERS", "MEDIA_TYPE", "EventStream", "event", "frame", "response"]
