"""Response cache for deterministic requests (temperature 0, or a fixed seed).

The cache sits at the engine seam: the key is a SHA-256 of the model id, the normalised sampling parameters and the
prompt token ids (the rendered harmony prompt already holds messages, tools, response format, reasoning effort and
date); the value is the generated token ids. Both the streaming and the non-streaming path parse those tokens the
same way, so a cached answer replays as a stream too. Nothing secret goes into a key (API keys never reach the
engine) and keys do not contain prompt text.

Backends:
- ``MemoryCache``: in-process LRU, bounded by entries and bytes (default).
- ``RedisCache``: ``--cache-url redis://…`` (``redis.asyncio``), shared by several servers, entries expire after a TTL.
  A Redis that is down or slow is treated as a miss and logged (without the URL's password); it never fails a request.

A stored value is ``MAGIC`` + little-endian uint32 token ids. Anything else under a key (left by another program, an
older version, a truncated write, a value of another Redis type) is a miss, logged, and overwritten by the next
answer; the memory cache drops such an entry.
"""

from __future__ import annotations

import array
import hashlib
import json
import logging
import sys
import time
from collections import OrderedDict
from typing import Any, Protocol, Sequence
from urllib.parse import urlsplit

from gptoss_cli.redact import mask_url as redact_url
from gptoss_cli.serve.engines.interface import SamplingParams

log = logging.getLogger("gptoss.serve.cache")

KEY_PREFIX = "gptoss:resp:v2:"
MAGIC = b"GTK2"  # first bytes of every stored value
_ENTRY_OVERHEAD = 96  # rough bytes per entry besides the tokens (key, list, bookkeeping)


def is_cacheable(params: SamplingParams) -> bool:
    return params.greedy or params.seed is not None


def normalised_params(params: SamplingParams) -> dict[str, Any]:
    """The parameters that change the output, in a canonical form (greedy ignores temperature, top_p and seed)."""
    greedy = params.greedy
    return {
        "max_tokens": int(params.max_tokens),
        "temperature": 0.0 if greedy else round(float(params.temperature), 6),
        "top_p": 1.0 if greedy else round(float(params.top_p), 6),
        "seed": None if greedy else int(params.seed) if params.seed is not None else None,
        "presence_penalty": round(float(params.presence_penalty), 6),
        "frequency_penalty": round(float(params.frequency_penalty), 6),
        "stop": sorted(int(t) for t in params.stop_token_ids),
    }


def cache_key(model_id: str, prompt_ids: Sequence[int], params: SamplingParams) -> str | None:
    """The cache key of a request, or None when the request is not deterministic."""
    if not is_cacheable(params):
        return None
    h = hashlib.sha256()
    h.update(json.dumps({"model": model_id, "params": normalised_params(params)}, sort_keys=True).encode())
    h.update(b"\0")
    h.update(_pack(prompt_ids))
    return KEY_PREFIX + h.hexdigest()


def _ids(ids: Sequence[int]) -> bytes:
    arr = array.array("I", ids)
    if sys.byteorder != "little":  # pragma: no cover - big-endian hosts
        arr.byteswap()
    return arr.tobytes()


def _pack(ids: Sequence[int]) -> bytes:
    return MAGIC + _ids(ids)


def _unpack(blob: Any) -> list[int] | None:
    """The token ids of a stored value, or None when it is not one of ours (malformed: a miss)."""
    if not isinstance(blob, (bytes, bytearray)) or not blob.startswith(MAGIC):
        return None
    body = bytes(blob[len(MAGIC):])
    if not body or len(body) % 4:
        return None
    arr = array.array("I")
    arr.frombytes(body)
    if sys.byteorder != "little":  # pragma: no cover
        arr.byteswap()
    return arr.tolist()


class ResponseCache(Protocol):
    description: str

    async def get(self, key: str) -> list[int] | None: ...

    async def put(self, key: str, tokens: Sequence[int]) -> None: ...

    async def close(self) -> None: ...


class MemoryCache:
    """LRU over token-id lists, bounded by ``max_entries`` and ``max_bytes`` (tokens × 4 + overhead)."""

    def __init__(self, max_entries: int = 1024, max_bytes: int = 64 * 1024 * 1024) -> None:
        self.max_entries = max(1, int(max_entries))
        self.max_bytes = max(1, int(max_bytes))
        self._data: OrderedDict[str, bytes] = OrderedDict()
        self.bytes = 0
        self.description = f"memory (up to {self.max_entries} entries, {self.max_bytes} bytes)"

    def __len__(self) -> int:
        return len(self._data)

    @staticmethod
    def _cost(key: str, blob: Any) -> int:
        return (len(blob) if isinstance(blob, (bytes, bytearray)) else 0) + len(key) + _ENTRY_OVERHEAD

    async def get(self, key: str) -> list[int] | None:
        blob = self._data.get(key)
        if blob is None:
            return None
        tokens = _unpack(blob)
        if tokens is None:  # cannot happen through put(); a damaged entry is dropped
            self._forget(key)
            return None
        self._data.move_to_end(key)
        return tokens

    def _forget(self, key: str) -> None:
        blob = self._data.pop(key, None)
        if blob is not None:
            self.bytes -= self._cost(key, blob)

    async def put(self, key: str, tokens: Sequence[int]) -> None:
        blob = _pack(tokens)
        cost = self._cost(key, blob)
        if cost > self.max_bytes:
            return  # larger than the whole cache: not worth evicting everything for it
        old = self._data.pop(key, None)
        if old is not None:
            self.bytes -= self._cost(key, old)
        self._data[key] = blob
        self.bytes += cost
        while len(self._data) > self.max_entries or self.bytes > self.max_bytes:
            k, v = self._data.popitem(last=False)
            self.bytes -= self._cost(k, v)

    async def close(self) -> None:
        self._data.clear()
        self.bytes = 0


class RedisCache:
    """A shared cache in Redis. Values are little-endian uint32 token ids; keys expire after ``ttl`` seconds."""

    def __init__(self, url: str, ttl: int = 3600, timeout: float = 0.5, max_tokens: int = 1 << 20) -> None:
        import redis.asyncio as redis_asyncio

        self.url_shown = redact_url(url)
        self.description = f"redis ({self.url_shown}, ttl {ttl} s)"
        self.ttl = int(ttl)
        self.max_tokens = max_tokens
        self._client = redis_asyncio.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
        self._last_warning = 0.0

    def _warn(self, what: str, exc: BaseException) -> None:
        now = time.monotonic()
        if now - self._last_warning > 60:
            self._last_warning = now
            reason = str(exc) if isinstance(exc, ValueError) else type(exc).__name__
            log.warning("response cache %s at %s failed (%s); serving without the cache", what, self.url_shown,
                        reason)

    async def ping(self) -> bool:
        try:
            return bool(await self._client.ping())
        except Exception as exc:  # noqa: BLE001 - reported to the caller as False
            self._warn("ping", exc)
            return False

    async def get(self, key: str) -> list[int] | None:
        try:
            blob = await self._client.get(key)
        except Exception as exc:  # noqa: BLE001 - a cache failure is a miss
            self._warn("read", exc)
            return None
        if blob is None:
            return None
        tokens = _unpack(blob)
        if tokens is None:
            self._warn("read", ValueError("a malformed value"))
        return tokens

    async def put(self, key: str, tokens: Sequence[int]) -> None:
        if len(tokens) > self.max_tokens:
            return
        try:
            await self._client.set(key, _pack(tokens), ex=self.ttl if self.ttl > 0 else None)
        except Exception as exc:  # noqa: BLE001 - a cache failure must not fail the request
            self._warn("write", exc)

    async def close(self) -> None:
        try:
            await self._client.aclose()
        except Exception:  # noqa: BLE001
            pass


def open_cache(
    url: str | None,
    enabled: bool = True,
    *,
    max_entries: int = 1024,
    max_bytes: int = 64 * 1024 * 1024,
    ttl: int = 3600,
) -> ResponseCache | None:
    """The cache the settings ask for: None (``--no-cache``), Redis (``redis://``/``rediss://``/``unix://``) or memory."""
    if not enabled:
        return None
    if url:
        scheme = urlsplit(url).scheme.lower()
        if scheme not in ("redis", "rediss", "unix"):
            from gptoss_cli.errors import UsageError

            raise UsageError(f"--cache-url must be redis://, rediss:// or unix://, got {redact_url(url)}")
        return RedisCache(url, ttl=ttl)
    return MemoryCache(max_entries=max_entries, max_bytes=max_bytes)


__all__ = [
    "MemoryCache",
    "RedisCache",
    "ResponseCache",
    "cache_key",
    "is_cacheable",
    "normalised_params",
    "open_cache",
    "redact_url",
]
