"""Request-level backends: the gptoss front in front of another OpenAI-compatible server.

The transformers engine is token-level (``engines/interface.py``: the front renders harmony and parses tokens). vLLM, an existing
vLLM/KServe cluster, Ollama's ``/v1`` and llama.cpp's server are not: they speak Chat Completions themselves. For
them the app skips its harmony path and calls a ``ChatBackend`` instead; the front keeps what it adds on top (API
keys, the error envelope, backpressure, metrics, the access log) and this module makes the replies look like ours
(``upstream_normalise.py``: both reasoning names, ``call_…`` tool-call ids and first-delta shape, usage, ``[DONE]``).

Streams are relayed chunk by chunk as they arrive: nothing is buffered, so the client sees the first token as soon
as the upstream sends it. The upstream's API key is sent only to the upstream and never appears in a reply, a log
line or an exception; the client's own ``Authorization`` header is never forwarded.

httpx is imported at module level (a core dependency, light); nothing here imports fastapi or torch.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Any, AsyncIterator, Callable
from urllib.parse import urlsplit, urlunsplit

import httpx

from gptoss_cli.config import Secret
from gptoss_cli.errors import UsageError
from gptoss_cli.redact import public_url as safe_url
from gptoss_cli.serve.errors import APIError
from gptoss_cli.serve.engines.upstream.errors import (
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
    json_or_text,
    map_status,
    scrub,
)
from gptoss_cli.serve.engines.upstream.normalise import StreamNormaliser, normalise_reply, upstream_body

log = logging.getLogger("gptoss.serve.upstream")

PATHS = {"chat": "/chat/completions", "completion": "/completions"}


@dataclass(frozen=True)
class Observation:
    """One upstream exchange, for metrics: status sent to the client, time to first byte and total seconds."""

    kind: str
    stream: bool
    status: int
    first_byte_s: float | None
    total_s: float
    usage: dict[str, Any] | None = None


@dataclass(frozen=True)
class UpstreamConfig:
    """Where the backend is and how to talk to it. ``url`` is the base URL (``…/v1``; ``/v1`` is added to a bare
    host). ``model``: the name to send upstream (``None``: discovered from the upstream's ``/models`` at start, else
    the front's served name)."""

    url: str
    api_key: Secret | None = None
    model: str | None = None
    connect_timeout: float = 10.0
    read_timeout: float = 600.0
    max_connections: int = 256
    default_reasoning_effort: str | None = None
    uds: str | None = None  # a Unix socket to connect through (the host in ``url`` is then only the Host header)

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise UsageError(f"upstream URL must be http(s)://host[:port][/path], got {safe_url(self.url)!r}")
        path = parts.path.rstrip("/") or "/v1"
        object.__setattr__(self, "url", urlunsplit((parts.scheme, parts.netloc, path, "", "")))

    @property
    def shown_url(self) -> str:
        return f"unix:{self.uds}" if self.uds else safe_url(self.url)


class UpstreamBackend:
    """``ChatBackend`` over any OpenAI-compatible server, with an ``httpx.AsyncClient`` (injectable transport)."""

    def __init__(
        self,
        config: UpstreamConfig,
        *,
        served_model_name: str = "gpt-oss-20b",
        transport: httpx.AsyncBaseTransport | None = None,
        observe: Callable[[Observation], None] | None = None,
        description: str | None = None,
    ) -> None:
        self.config = config
        self.served_model_name = served_model_name
        self.upstream_model = config.model or served_model_name
        self.max_model_len: int | None = None
        self.description = description or f"upstream {config.shown_url}"
        self._observe: Callable[[Observation], None] = observe or (lambda o: None)
        self._transport = transport
        self._client = self._new_client()

    def _new_client(self) -> httpx.AsyncClient:
        config = self.config
        headers = {"Accept": "application/json"}
        if config.api_key:
            headers["Authorization"] = f"Bearer {config.api_key.reveal()}"
        limits = httpx.Limits(max_connections=config.max_connections, max_keepalive_connections=32)
        transport = self._transport
        if transport is None and config.uds:
            transport = httpx.AsyncHTTPTransport(uds=config.uds, limits=limits)
        return httpx.AsyncClient(
            base_url=config.url,
            headers=headers,
            transport=transport,
            timeout=httpx.Timeout(config.read_timeout, connect=config.connect_timeout),
            limits=limits,
            trust_env=False,
            follow_redirects=False,
        )

    async def reset_connections(self) -> None:
        """Drop pooled connections (the server behind them restarted); new requests open fresh ones."""
        old, self._client = self._client, self._new_client()
        await old.aclose()

    # ------------------------------------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Look the model up on the upstream (name and context length); an unreachable upstream is only logged."""
        try:
            resp = await self._client.get("/models", timeout=5.0)
            cards = resp.json().get("data") if resp.status_code == 200 else None
        except (httpx.HTTPError, ValueError, AttributeError):
            log.warning("upstream %s is not answering yet; requests get 503 until it does", self.config.shown_url)
            return
        if not isinstance(cards, list):
            return
        cards = [c for c in cards if isinstance(c, dict) and isinstance(c.get("id"), str)]
        names = [c["id"] for c in cards]
        if self.config.model is None and self.upstream_model not in names and len(names) == 1:
            log.info("upstream serves one model, %r: sending requests to it", names[0])
            self.upstream_model = names[0]
        for card in cards:
            if card["id"] == self.upstream_model:
                for key in ("max_model_len", "context_length", "context_window"):
                    if isinstance(card.get(key), int) and card[key] > 0:
                        self.max_model_len = card[key]
                        break

    async def ready(self) -> bool:
        try:
            resp = await self._client.get("/models", timeout=3.0)
        except httpx.HTTPError:
            return False
        return resp.status_code == 200

    async def close(self) -> None:
        await self._client.aclose()

    # ------------------------------------------------------------------------------------------------- requests

    async def complete(self, kind: str, body: dict[str, Any], model: str) -> dict[str, Any]:
        started = time.perf_counter()
        payload = upstream_body(body, model=self.upstream_model, stream=False,
                                default_effort=self.config.default_reasoning_effort)
        status, usage, first = 500, None, None
        try:
            resp = await self._send(kind, payload, stream=False)
            first = time.perf_counter() - started
            if resp.status_code != 200:
                raise map_status(resp.status_code, json_or_text(resp.content), resp.headers, self._secrets)
            try:
                data = json.loads(resp.content)
            except ValueError:
                raise UpstreamError("The upstream model server answered with something that is not JSON.") from None
            reply = normalise_reply(data, kind=kind, model=model, request=body)
            if reply is None:
                raise UpstreamError("The upstream model server answered without choices.")
            status, usage = 200, reply["usage"]
            return reply
        except APIError as exc:
            status = exc.status
            raise
        finally:
            total = time.perf_counter() - started
            self._observe(Observation(kind, False, status, first, total, usage))

    async def open_stream(self, kind: str, body: dict[str, Any], model: str) -> AsyncIterator[dict[str, Any]]:
        started = time.perf_counter()
        payload = upstream_body(body, model=self.upstream_model, stream=True,
                                default_effort=self.config.default_reasoning_effort)
        try:
            resp = await self._send(kind, payload, stream=True)
        except APIError as exc:
            self._observe(Observation(kind, True, exc.status, None, time.perf_counter() - started))
            raise
        if resp.status_code != 200:
            try:
                raw = await resp.aread()
            finally:
                await resp.aclose()
            exc = map_status(resp.status_code, json_or_text(raw), resp.headers, self._secrets)
            self._observe(Observation(kind, True, exc.status, None, time.perf_counter() - started))
            raise exc
        include_usage = bool((body.get("stream_options") or {}).get("include_usage")) if isinstance(
            body.get("stream_options"), dict) else False
        norm = StreamNormaliser(kind=kind, model=model, request=body, include_usage=include_usage)
        return _Stream(self._relay(resp, norm, kind, started), resp)

    async def _relay(self, resp: httpx.Response, norm: StreamNormaliser, kind: str,
                     started: float) -> AsyncIterator[dict[str, Any]]:
        first: float | None = None
        status = 200
        try:
            async for data in sse_data(resp.aiter_lines()):
                if first is None:
                    first = time.perf_counter() - started
                if data == "[DONE]":
                    break
                try:
                    chunk = json.loads(data)
                except ValueError:
                    log.warning("upstream sent a stream event that is not JSON; skipped")
                    continue
                if isinstance(chunk, dict) and "error" in chunk:
                    chunk = scrub(chunk, self._secrets)
                for out in norm.feed(chunk):
                    yield out
            for out in norm.finish():
                yield out
        except httpx.TimeoutException:
            status = 504
            raise UpstreamTimeout(
                f"The upstream model server sent nothing for {self.config.read_timeout:g} s; the stream was cut."
            ) from None
        except httpx.HTTPError:
            status = 502
            raise UpstreamError("The connection to the upstream model server broke during the stream.") from None
        finally:
            await resp.aclose()
            self._observe(Observation(kind, True, status, first, time.perf_counter() - started, norm.usage))

    async def _send(self, kind: str, payload: dict[str, Any], *, stream: bool) -> httpx.Response:
        request = self._client.build_request("POST", PATHS[kind], json=payload)
        try:
            return await self._client.send(request, stream=stream)
        except httpx.ConnectTimeout:
            raise UpstreamUnavailable(
                f"The upstream model server at {self.config.shown_url} did not accept a connection within "
                f"{self.config.connect_timeout:g} s; check that it is running and reachable."
            ) from None
        except httpx.ConnectError as exc:
            reason = "connection refused" if "refused" in str(exc).lower() else "cannot connect"
            raise UpstreamUnavailable(
                f"The upstream model server at {self.config.shown_url} is unreachable ({reason}); "
                "check that it is running and that --upstream-url is right."
            ) from None
        except httpx.RemoteProtocolError:
            raise UpstreamError("The upstream model server closed the connection without answering.") from None
        except httpx.TimeoutException:
            raise UpstreamTimeout(
                f"The upstream model server did not answer within {self.config.read_timeout:g} s."
            ) from None
        except httpx.HTTPError as exc:
            raise UpstreamError(f"The request to the upstream model server failed ({type(exc).__name__}).") from None

    @property
    def _secrets(self) -> tuple[str, ...]:
        return (self.config.api_key.reveal(),) if self.config.api_key else ()


class _Stream:
    """The relayed chunks; ``aclose()`` also closes the upstream response when iteration never started."""

    def __init__(self, chunks: AsyncIterator[dict[str, Any]], resp: httpx.Response) -> None:
        self._chunks = chunks
        self._resp = resp

    def __aiter__(self) -> "_Stream":
        return self

    async def __anext__(self) -> dict[str, Any]:
        return await self._chunks.__anext__()

    async def aclose(self) -> None:
        try:
            await self._chunks.aclose()  # type: ignore[attr-defined]
        finally:
            await self._resp.aclose()


async def sse_data(lines: AsyncIterator[str]) -> AsyncIterator[str]:
    """The ``data`` of each server-sent event, as soon as its blank line arrives (CRLF, comments, ``event:`` lines and
    multi-line data are all tolerated)."""
    buffer: list[str] = []
    async for line in lines:
        line = line.rstrip("\r\n")
        if line == "":
            if buffer:
                yield "\n".join(buffer)
                buffer = []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        if name == "data":
            buffer.append(value[1:] if value.startswith(" ") else value)
    if buffer:
        yield "\n".join(buffer)


__all__ = [
    "Observation",
    "UpstreamBackend",
    "UpstreamConfig",
    "UpstreamError",
    "UpstreamTimeout",
    "UpstreamUnavailable",
    "map_status",
    "safe_url",
    "sse_data",
]
