"""Request guards that run before any route: API-key check, then the body-size limit (pure ASGI, cheap).

- API key (when configured: ``--api-key`` and/or the named keys of a keys file, ``openai/keyring.py``): ``/v1/*``
  needs ``Authorization: Bearer <key>``, compared in constant time (``hmac.compare_digest``). ``/health``,
  ``/ready``, ``/openapi.json`` and ``/docs`` stay open. 401 otherwise. The key's name (never the key) and its
  policy go on the request's record, for the logs, metrics, limits and journal.
- Journal (``--journal``): every ``/v1/*`` request is marked for it; while the journal cannot be written and
  ``--journal-on-error refuse`` is in force, it is answered 503 (``openai/journaling.py``).
- Body size: a declared ``Content-Length`` over the limit is refused at once; a chunked body is read up to the limit
  and refused as soon as it passes it (413). The accepted body is handed on unchanged.
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable

from gptoss_cli.config import Secret
from gptoss_cli.serve.errors import APIError, BadRequest, BodyTooLarge, Unauthorized
from gptoss_cli.serve.generation.record import current_record
from gptoss_cli.serve.openai.journaling import Journal, JournalUnavailable
from gptoss_cli.serve.openai.keyring import KeyRing

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
        keys: KeyRing | None = None,
        journal: Journal | None = None,
    ) -> None:
        self.app = app
        self._keys = keys if keys is not None else (KeyRing(None, api_key) if api_key else None)
        self._journal = journal
        self.max_body_bytes = max_body_bytes
        self.protected_prefix = protected_prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            if scope["path"].startswith(self.protected_prefix):
                self._check(scope)
            if scope["method"] in _BODY_METHODS:
                receive = await self._buffered(scope, receive)
        except APIError as exc:
            await send_error(exc, send)
            return
        except _ClientGone:
            return
        await self.app(scope, receive, send)

    def _check(self, scope: Scope) -> None:
        rec = current_record()
        if rec is not None and self._journal is not None:
            rec.journaled = True
        if self._keys is not None:
            self._check_key(scope, rec)
        if self._journal is not None and not self._journal.admit():
            raise JournalUnavailable()

    def _check_key(self, scope: Scope, rec: Any) -> None:
        assert self._keys is not None
        header = _header(scope, b"authorization")
        if header is None:
            raise Unauthorized("Missing API key: send it as 'Authorization: Bearer <key>'.")
        scheme, _, token = header.partition(b" ")
        identity = self._keys.authenticate(token.strip()) if scheme.lower() == b"bearer" else None
        if identity is None:
            raise Unauthorized("Incorrect API key provided.")
        if rec is not None:
            rec.key_name, rec.policy_name = identity.name, identity.policy

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
