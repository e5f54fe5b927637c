"""The no-reasoning mount: ``/no-reasoning/v1/*`` is ``/v1/*`` with every reasoning field taken out of the replies.

For clients that show whatever reasoning they receive and have no switch to stop it: Dify 0.15 wraps streamed
``reasoning_content`` into the answer as a "Thinking..." block, and its provider schema has no
``agent_thought_support``. ``gptoss dify-register --hide-reasoning`` registers such a Dify at
``http://HOST:PORT/no-reasoning/v1`` (same model name, same server). The model still reasons; only the
``reasoning`` / ``reasoning_content`` fields of chat and completion replies (JSON and SSE) are dropped, and stream
chunks left with nothing in them are not sent. Everything else (API key, limits, errors, tools, usage) is the ``/v1``
path's own behaviour, because the request is handed on as ``/v1/...``.

Pure ASGI, no imports beyond the standard library.
"""

from __future__ import annotations

import json
from typing import Any, Awaitable, Callable

NO_REASONING_PREFIX = "/no-reasoning"
REASONING_KEYS = ("reasoning_content", "reasoning", "thinking")

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def drop_reasoning(doc: Any) -> tuple[Any, bool]:
    """A reply or stream chunk without reasoning fields; the flag says whether a chunk is now worth sending."""
    if not isinstance(doc, dict) or not isinstance(doc.get("choices"), list):
        return doc, True
    removed = False
    useful = bool(doc.get("usage")) or not doc["choices"]
    for choice in doc["choices"]:
        if not isinstance(choice, dict):
            continue
        for holder in (choice, choice.get("message"), choice.get("delta")):
            if isinstance(holder, dict):
                removed |= any([holder.pop(k, None) is not None for k in REASONING_KEYS])  # pop them all
        delta = choice.get("delta")
        left = {k: v for k, v in delta.items() if v not in (None, "", [])} if isinstance(delta, dict) else {}
        useful |= bool(left) or choice.get("finish_reason") is not None or "delta" not in choice
    return doc, useful or not removed


def filter_sse(block: bytes) -> bytes | None:
    """One SSE event (``data: {...}``) without reasoning; None when nothing is left to send."""
    if not block.startswith(b"data: {") or not any(b'"' + k.encode() + b'"' in block for k in REASONING_KEYS):
        return block  # [DONE], comments, errors and chunks without reasoning go out byte for byte
    text = block.decode("utf-8")
    try:
        doc = json.loads(text[len("data: "):])
    except ValueError:
        return block
    doc, keep = drop_reasoning(doc)
    if not keep:
        return None
    return b"data: " + json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


class NoReasoningMiddleware:
    """Serve ``/no-reasoning/v1/*`` as ``/v1/*`` and take reasoning out of what it answers."""

    def __init__(self, app: ASGIApp, prefix: str = NO_REASONING_PREFIX) -> None:
        self.app = app
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope.get("type") == "http" else ""
        if not path.startswith(self.prefix + "/v1/"):
            await self.app(scope, receive, send)
            return
        inner = dict(scope, path=path[len(self.prefix):])
        raw = scope.get("raw_path")
        if isinstance(raw, bytes) and raw.startswith(self.prefix.encode() + b"/"):
            inner["raw_path"] = raw[len(self.prefix):]
        await self.app(inner, receive, _Filter(send).send)


class _Filter:
    """Rewrites the response: a JSON body whole, an event stream event by event (split on LF-LF)."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self._start: Message | None = None
        self._mode = "pass"
        self._buffer = b""

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            ctype = _header(message, b"content-type")
            self._mode = "sse" if ctype.startswith(b"text/event-stream") else (
                "json" if ctype.startswith(b"application/json") else "pass")
            if self._mode == "json":
                self._start = message  # sent once the body is known (its length changes)
                return
            if self._mode == "sse":
                message = dict(message, headers=[h for h in message.get("headers", [])
                                                 if h[0].lower() != b"content-length"])
            await self._send(message)
            return
        if message["type"] != "http.response.body" or self._mode == "pass":
            await self._send(message)
            return
        self._buffer += message.get("body", b"")
        more = message.get("more_body", False)
        if self._mode == "json":
            if not more:
                await self._send_json()
            return
        await self._send_events(more)

    async def _send_json(self) -> None:
        body = self._buffer
        if any(b'"' + k.encode() + b'"' in body for k in REASONING_KEYS):
            try:
                doc, _ = drop_reasoning(json.loads(body))
                body = json.dumps(doc, ensure_ascii=False).encode("utf-8")
            except ValueError:
                pass
        assert self._start is not None
        headers = [h for h in self._start.get("headers", []) if h[0].lower() != b"content-length"]
        headers.append((b"content-length", str(len(body)).encode()))
        await self._send(dict(self._start, headers=headers))
        await self._send({"type": "http.response.body", "body": body, "more_body": False})

    async def _send_events(self, more: bool) -> None:
        *complete, self._buffer = self._buffer.split(b"\n\n")
        if not more and self._buffer:
            complete.append(self._buffer)
            self._buffer = b""
        out = [kept + b"\n\n" for kept in (filter_sse(b) for b in complete if b) if kept is not None]
        if out or not more:
            await self._send({"type": "http.response.body", "body": b"".join(out), "more_body": more})


def _header(message: Message, name: bytes) -> bytes:
    for key, value in message.get("headers", []):
        if key.lower() == name:
            return bytes(value).lower()
    return b""


__all__ = ["NO_REASONING_PREFIX", "NoReasoningMiddleware", "drop_reasoning", "filter_sse"]
