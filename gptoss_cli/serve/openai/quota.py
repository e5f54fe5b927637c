"""Per-key limits and figures: requests and tokens per minute over a sliding 60-second window, and the key name
(never the key) on the metrics.

- ``admit(identity)`` runs when a chat or completion request arrives: over ``rpm`` requests in the last minute, or
  ``tpm`` tokens already spent in it, is a 429 ``rate_limit_exceeded`` with ``Retry-After`` (whole seconds until the
  window has room again); otherwise the request is counted.
- ``finished(record)`` runs when the response is over: the request's usage (prompt + completion tokens) is spent
  from its key's window, and ``gptoss_key_requests_total{key,status}`` / ``gptoss_key_tokens_total{key,kind}``
  count it. Tokens are known only at the end, so requests already running when the window fills still finish.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from typing import Any, Callable

from gptoss_cli.serve.errors import APIError
from gptoss_cli.serve.generation.record import RequestRecord

WINDOW = 60.0


class RateLimited(APIError):
    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message, headers={"Retry-After": str(max(1, math.ceil(retry_after)))})


class Quota:
    def __init__(self, registry: Any = None, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._requests: dict[str, deque[float]] = {}
        self._tokens: dict[str, deque[tuple[float, int]]] = {}
        self._metrics = _metrics(registry) if registry is not None else None

    def admit(self, identity: Any) -> None:
        """Count a request of ``identity`` (an ``Identity``), or raise ``RateLimited``."""
        if identity is None or (identity.rpm is None and identity.tpm is None):
            return
        with self._lock:
            now = self._clock()
            requests = _pruned(self._requests.setdefault(identity.name, deque()), now)
            if identity.rpm is not None and len(requests) >= identity.rpm:
                self._refused(identity.name, "requests")
                raise RateLimited(f"Rate limit reached for key {identity.name!r} on requests per minute: limit "
                                  f"{identity.rpm}. Retry after the time in Retry-After.",
                                  retry_after=requests[0] + WINDOW - now)
            if identity.tpm is not None:
                wait = self._token_wait(identity.name, identity.tpm, now)
                if wait is not None:
                    self._refused(identity.name, "tokens")
                    raise RateLimited(f"Rate limit reached for key {identity.name!r} on tokens per minute: limit "
                                      f"{identity.tpm}. Retry after the time in Retry-After.", retry_after=wait)
            requests.append(now)

    def _token_wait(self, name: str, limit: int, now: float) -> float | None:
        spent = _pruned(self._tokens.setdefault(name, deque()), now, tokens=True)
        used = sum(n for _, n in spent)
        if used < limit:
            return None
        for at, n in spent:  # the window has room once enough of the oldest spending has left it
            used -= n
            if used < limit:
                return at + WINDOW - now
        return WINDOW  # pragma: no cover - the loop always ends below the limit

    def finished(self, rec: RequestRecord) -> None:
        name = rec.key_name
        if name is None:
            return
        tokens = (rec.prompt_tokens or 0) + (rec.completion_tokens or 0)
        with self._lock:
            if tokens:
                self._tokens.setdefault(name, deque()).append((self._clock(), tokens))
        if self._metrics is not None:
            requests, token_counter, _ = self._metrics
            requests.labels(key=name, status=str(rec.status)).inc()
            if rec.prompt_tokens:
                token_counter.labels(key=name, kind="prompt").inc(rec.prompt_tokens)
            if rec.completion_tokens:
                token_counter.labels(key=name, kind="completion").inc(rec.completion_tokens)

    def _refused(self, name: str, limit: str) -> None:
        if self._metrics is not None:
            self._metrics[2].labels(key=name, limit=limit).inc()


def _pruned(window: deque, now: float, *, tokens: bool = False) -> deque:
    while window and (window[0][0] if tokens else window[0]) <= now - WINDOW:
        window.popleft()
    return window


def _metrics(registry: Any) -> tuple[Any, Any, Any]:
    """The per-key counters on ``registry`` (made once per registry: two apps may share one ``ServeMetrics``)."""
    from prometheus_client import Counter

    made = getattr(registry, "_gptoss_key_metrics", None)
    if made is not None:
        return made
    made = (
        Counter("gptoss_key_requests", "Requests answered, by API key name and HTTP status", ["key", "status"],
                registry=registry),
        Counter("gptoss_key_tokens", "Tokens used, by API key name (prompt, completion)", ["key", "kind"],
                registry=registry),
        Counter("gptoss_key_rate_limited", "Requests refused by a key's rpm/tpm limit", ["key", "limit"],
                registry=registry),
    )
    registry._gptoss_key_metrics = made
    return made


__all__ = ["WINDOW", "Quota", "RateLimited"]
