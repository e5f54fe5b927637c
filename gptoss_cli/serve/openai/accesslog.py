"""Access log and per-request bookkeeping: one line per request, text or JSON, no prompt text by default.

``AccessLogMiddleware`` is a plain ASGI middleware (works with streaming responses). For every HTTP request it

- takes ``X-Request-Id`` from the client when it is safe (``[A-Za-z0-9._-]{1,64}``) or makes one, and returns it;
- puts a mutable ``RequestRecord`` in a context variable, which the generation pipeline fills (tokens, time to first
  token, cache hit) — ``current_record()``;
- reads the ASGI ``receive`` channel itself (one reader task, handing messages on through a one-slot queue, so the
  body stays bounded by the app's own limits) and completes ``record.disconnected`` the moment the client goes
  away — also for non-streaming requests, which Starlette never cancels; the pipeline stops the generation then;
- when the response is over (or the client went away: status 499), writes one line and feeds the metrics.

Fields: ``ts id method route status prompt_tokens completion_tokens latency_ms ttft_ms cache client key``
(+ ``error``; ``policy``: the ids of the ``--policy`` rules the request hit; ``kv_waits`` / ``preemptions`` when the
batch held the request back for KV memory or preempted it); ``key`` is the API key's name, never the key.
``on_finish`` callbacks (per-key usage, the journal) get the finished record after the line is written.
The route is the path only: the query string is never logged. Prompt and completion text appear only with
``log_prompts=True`` (``--log-prompts``); privacy is the default.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import sys
import time
import uuid
from typing import Any, Awaitable, Callable, MutableMapping, Sequence

from gptoss_cli.serve.generation.record import RequestRecord, _current, current_record
from gptoss_cli.serve.logfmt import ACCESS_LOGGER, timestamp
from gptoss_cli.serve.options import LOG_FORMATS

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

CLIENT_CLOSED = 499
_SAFE_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def request_id_from(headers: Sequence[tuple[bytes, bytes]]) -> str:
    for name, value in headers:
        if name.lower() == b"x-request-id":
            text = value.decode("latin-1").strip()
            if _SAFE_ID.match(text):
                return text
    return uuid.uuid4().hex


def format_line(rec: RequestRecord, fmt: str = "text", decode: Callable[[Sequence[int]], str] | None = None,
                log_prompts: bool = False) -> str:
    data: dict[str, Any] = {
        "ts": timestamp(),
        "id": rec.id,
        "method": rec.method,
        "route": rec.path[:200],
        "status": rec.status,
        "prompt_tokens": rec.prompt_tokens,
        "completion_tokens": rec.completion_tokens,
        "latency_ms": round((rec.latency or 0.0) * 1000, 1),
        "ttft_ms": round(rec.ttft * 1000, 1) if rec.ttft is not None else None,
        "cache": None if rec.cache_hit is None else ("hit" if rec.cache_hit else "miss"),
        "client": rec.client,
        "key": rec.key_name,
    }
    if rec.error:
        data["error"] = rec.error
    if rec.policy_hits:
        data["policy"] = ",".join(rec.policy_hits)
    if rec.kv_waits:
        data["kv_waits"] = rec.kv_waits
    if rec.preemptions:
        data["preemptions"] = rec.preemptions
    if log_prompts and decode is not None:
        if rec.prompt_ids is not None:
            data["prompt"] = decode(rec.prompt_ids)
        if rec.completion_ids is not None:
            data["completion"] = decode(rec.completion_ids)
    if fmt == "json":
        return json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    parts = []
    for k, v in data.items():
        if v is None:
            v = "-"
        elif isinstance(v, str) and (not v or any(c.isspace() or c in '"=' for c in v)):
            v = json.dumps(v, ensure_ascii=False)
        parts.append(f"{k}={v}")
    return " ".join(parts)


class _CurrentStderr(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when a line is emitted (not the one at set-up: a test harness or the
    CLI may have replaced, and closed, that one since)."""

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:  # StreamHandler.__init__ assigns it; sys.stderr is read at emit time
        pass


def configure_access_logger(stream: Any = None) -> logging.Logger:
    """Send ``gptoss.access`` lines, bare, to ``stream`` (stderr by default); idempotent."""
    logger = logging.getLogger(ACCESS_LOGGER)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    if not any(getattr(h, "_gptoss_access", False) for h in logger.handlers):
        handler = logging.StreamHandler(stream) if stream is not None else _CurrentStderr()
        handler.setFormatter(logging.Formatter("%(message)s"))
        handler._gptoss_access = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    return logger


class _ClientChannel:
    """Reads the ASGI ``receive`` channel in one task (``read``), handing messages on through a one-slot queue
    (``receive``), and completes ``disconnected`` the moment the client goes away."""

    def __init__(self, receive: Receive, disconnected: asyncio.Future) -> None:
        self._receive = receive
        self._disconnected = disconnected
        self._inbox: asyncio.Queue[Message] = asyncio.Queue(maxsize=1)
        self._gone = False

    async def read(self) -> None:
        try:
            while True:
                message = await self._receive()
                if message["type"] == "http.disconnect":
                    break
                await self._inbox.put(message)
        except Exception:  # noqa: BLE001 - a broken channel counts as a disconnect
            pass
        if not self._disconnected.done():
            self._disconnected.set_result(None)
        await self._inbox.put({"type": "http.disconnect"})

    async def receive(self) -> Message:
        if self._gone:
            return {"type": "http.disconnect"}
        message = await self._inbox.get()
        self._gone = message["type"] == "http.disconnect"
        return message


class AccessLogMiddleware:
    def __init__(
        self,
        app: Callable[[Scope, Receive, Send], Awaitable[None]],
        *,
        fmt: str = "text",
        log_prompts: bool = False,
        metrics: Any = None,
        decode: Callable[[Sequence[int]], str] | None = None,
        emit: Callable[[str], None] | None = None,
        on_finish: Sequence[Callable[[RequestRecord], None]] = (),
    ) -> None:
        if fmt not in LOG_FORMATS:
            raise ValueError("log format must be text or json")
        self.app = app
        self.fmt = fmt
        self.log_prompts = log_prompts
        self.metrics = metrics
        self.decode = decode
        self.emit = emit or logging.getLogger(ACCESS_LOGGER).info
        self.on_finish = tuple(on_finish)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        rec = RequestRecord(
            id=request_id_from(scope.get("headers") or []),
            method=scope.get("method", "GET"),
            path=scope.get("path", "/"),
            client=client[0] if client else None,
        )
        rec.disconnected = asyncio.get_running_loop().create_future()
        channel = _ClientChannel(receive, rec.disconnected)
        receive_wrapper = channel.receive
        reader = asyncio.ensure_future(channel.read())
        done = False

        async def send_wrapper(message: Message) -> None:
            nonlocal done
            if message["type"] == "http.response.start":
                rec.status = int(message["status"])
                headers = list(message.get("headers") or [])
                headers.append((b"x-request-id", rec.id.encode("latin-1")))
                message["headers"] = headers
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                # The last body message of a stream whose client already left reaches nobody (the server drops
                # it): the request stays unfinished, 499. The reader only sees the server's own end-of-response
                # disconnect after this send, so a completed response is never mistaken for a dropped one.
                done = not rec.disconnected.done()
            await send(message)

        token = _current.set(rec)
        try:
            await self.app(scope, receive_wrapper, send_wrapper)
        except Exception as exc:
            rec.error = rec.error or type(exc).__name__
            if rec.disconnected.done() and not done:
                rec.status = CLIENT_CLOSED  # nobody left to answer: record it, do not raise into the server
                return
            if not rec.status:
                rec.status = 500
            raise
        finally:
            _current.reset(token)
            reader.cancel()
            if not done and rec.status < 500:
                rec.status = CLIENT_CLOSED if rec.status == 0 or rec.status < 400 else rec.status
            rec.latency = time.perf_counter() - rec.start
            self._finish(rec)

    def _finish(self, rec: RequestRecord) -> None:
        if self.metrics is not None:
            try:
                self.metrics.request_done(rec.path, rec.status, rec.latency or 0.0)
            except Exception:  # noqa: BLE001 - metrics must never break a response
                pass
        try:
            self.emit(format_line(rec, self.fmt, self.decode, self.log_prompts))
        except Exception:  # noqa: BLE001 - nor may logging
            pass
        for finish in self.on_finish:
            try:
                finish(rec)
            except Exception:  # noqa: BLE001 - nor anything else after the response
                logging.getLogger("gptoss.serve").exception("after-request hook failed")


__all__ = [
    "ACCESS_LOGGER",
    "LOG_FORMATS",
    "AccessLogMiddleware",
    "RequestRecord",
    "configure_access_logger",
    "current_record",
    "format_line",
    "request_id_from",
]
