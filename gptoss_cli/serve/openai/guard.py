"""Request guards that run before any route: API-key check, then the body-size limit (pure ASGI, cheap).

- API key (when configured): ``/v1/*`` needs ``Authorization: Bearer <key>``, compared in constant time
  (``hmac.compare_digest``). ``/health``, ``/ready``, ``/openapi.json`` and ``/docs`` stay open. 401 otherwise.
- Body size: a declared ``Content-Length`` over the limit is refused at once; a chunked body is read up to the limit
  and refused as soon as it passes it (413). The accepted body is handed on unchanged.
"""

from __future__ import annotations

import hmac
from typing import Any, Awaitable, Callable

from gptoss_cli.config import Secret
from gptoss_cli.serve.errors import APIError, BadRequest, BodyTooLarge, Unauthorized

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


class GuardMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        api_key: Secret | None,
        max_body_bytes: int,
        protected_prefix: str = "/v1/",
    ) -> None:
        self.app = app
        self._key = api_key.reveal().encode("utf-8") if api_key else None
        self.max_body_bytes = max_body_bytes
        self.protected_prefix = protected_prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            if self._key is not None and scope["path"].startswith(self.protected_prefix):
                self._check_key(scope)
            if scope["method"] in _BODY_METHODS:
                receive = await self._buffered(scope, receive)
        except APIError as exc:
            await send_error(exc, send)
            return
        except _ClientGone:
            return
        await self.app(scope, receive, send)

    def _check_key(self, scope: Scope) -> None:
        header = _header(scope, b"authorization")
        if header is None:
            raise Unauthorized("Missing API key: send it as 'Authorization: Bearer <key>'.")
        scheme, _, token = header.partition(b" ")
        assert self._key is not None
        if scheme.lower() != b"bearer" or not hmac.compare_digest(token.strip(), self._key):
            raise Unauthorized("Incorrect API key provided.")

    async def _buffered(self, scope: Scope, receive: Receive) -> Receive:
        declared = _header(scope, b"content-length")
        if declared is not None:
            try:
                if int(declared) > self.max_body_bytes:
                    raise BodyTooLarge(self.max_body_bytes)
            except ValueError:
                raise BadRequest("Invalid Content-Length header.") from None
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _ClientGone
            body = message.get("body", b"")
            size += len(body)
            if size > self.max_body_bytes:
                raise BodyTooLarge(self.max_body_bytes)
            chunks.append(body)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        return replay


class _ClientGone(Exception):
    pass


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return value
    return None


async def send_error(exc: APIError, send: Send) -> None:
    body = exc.body()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in exc.headers.items()]
    if isinstance(exc, BodyTooLarge):
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": exc.status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


__all__ = ["GuardMiddleware", "send_error"]
