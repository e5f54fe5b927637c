"""``JournalMiddleware``: a reply sent in one piece is journaled *before* it leaves, so that with
``--journal-on-error refuse`` a record that cannot be written turns that very reply into a 503 — no JSON answer is
served unlogged. Streamed replies cannot be taken back once they started: they are journaled when they end (the
access log's end-of-request point, ``Journal.record``), and the next request is refused if that write failed.

It sits just inside the access log (the request's record exists, and the status the client finally gets is the
one the access log sees) and outside the guard (whose 401/413/503 answers are journaled the same way).
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable, MutableMapping

from gptoss_cli.serve.generation.record import current_record
from gptoss_cli.serve.openai.guard import send_error
from gptoss_cli.serve.openai.journaling import Journal, JournalUnavailable

Message = MutableMapping[str, Any]
ASGIApp = Callable[[Any, Any, Any], Awaitable[None]]


class JournalMiddleware:
    def __init__(self, app: ASGIApp, *, journal: Journal) -> None:
        self.app = app
        self.journal = journal

    async def __call__(self, scope: Any, receive: Any, send: Callable[[Message], Awaitable[None]]) -> None:
        rec = current_record()
        if scope["type"] != "http" or rec is None:
            await self.app(scope, receive, send)
            return
        held: Message | None = None
        streaming = False

        async def send_wrapper(message: Message) -> None:
            nonlocal held, streaming
            if streaming or not rec.journaled:
                if held is not None:
                    start, held = held, None
                    await send(start)
                await send(message)
                return
            if message["type"] == "http.response.start":
                held = message  # until the body shows whether the reply comes in one piece
                return
            if message["type"] == "http.response.body" and held is not None:
                if message.get("more_body", False):
                    streaming = True
                    start, held = held, None
                    await send(start)
                    await send(message)
                    return
                start, held = held, None
                rec.status = int(start["status"])
                if self.journal.record_now(rec) or self.journal.on_error == "continue":
                    await send(start)
                    await send(message)
                else:
                    await send_error(JournalUnavailable(), send)
                return
            await send(message)

        await self.app(scope, receive, send_wrapper)


__all__ = ["JournalMiddleware"]
