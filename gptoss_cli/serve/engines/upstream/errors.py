"""Upstream HTTP errors → the OpenAI error envelope the client gets (pure; used by ``upstream.py``).

    upstream 400 / 422     → 400 (context-length messages keep ``code: context_length_exceeded``)
    upstream 401 / 403     → 502 upstream_auth_failed (gptoss's key for the upstream is wrong, not the client's)
    upstream 404           → 502 upstream_not_found (wrong --upstream-url / --upstream-model)
    upstream 413           → 413            upstream 429 → 429 (+ Retry-After)
    upstream 408 / 504     → 504            upstream 503 → 503 (+ Retry-After)
    other 4xx              → 400            other 5xx    → 502 upstream_error
    cannot connect         → 503 upstream_unavailable (raised by ``upstream.py``)

Messages keep the upstream's own text (flattened, at most 1000 characters) with any secret scrubbed out.
"""

from __future__ import annotations

import json
from typing import Any

from gptoss_cli.serve.errors import APIError, BadRequest, Overloaded
from gptoss_cli.serve.engines.upstream.normalise import error_envelope


class UpstreamError(APIError):
    """The upstream failed or answered something unusable: 502 unless a more precise status applies."""

    status = 502
    type = "server_error"
    code = "upstream_error"


class UpstreamUnavailable(APIError):
    status = 503
    type = "server_error"
    code = "upstream_unavailable"

    def __init__(self, message: str, *, retry_after: int = 5) -> None:
        super().__init__(message, headers={"Retry-After": str(retry_after)})


class _TooLarge(APIError):
    status = 413
    type = "invalid_request_error"
    code = "request_too_large"


class UpstreamTimeout(APIError):
    status = 504
    type = "server_error"
    code = "upstream_timeout"


def json_or_text(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return {"message": raw.decode("utf-8", errors="replace")[:500]}


def scrub(data: Any, secrets: tuple[str, ...]) -> Any:
    """``data`` (any JSON value) with every secret replaced by ``********``."""
    text = json.dumps(data)
    for s in secrets:
        if s:
            text = text.replace(json.dumps(s)[1:-1], "********")
    return json.loads(text)


def map_status(status: int, data: Any, headers: Any, secrets: tuple[str, ...] = ()) -> APIError:
    """The error the client gets for an upstream HTTP error (OpenAI envelope; the upstream's message kept)."""
    err = error_envelope(scrub(data, secrets), default=f"HTTP {status}")["error"]
    message, code, param = err["message"], err["code"], err["param"]
    retry = headers.get("retry-after", "") if headers is not None else ""
    retry_after = int(retry) if retry.isdigit() else None
    if status in (400, 422):
        if "context length" in message.lower() or code == "context_length_exceeded":
            return BadRequest(message, param=param or "messages", code="context_length_exceeded")
        return BadRequest(message, param=param, code=code if code != "upstream_error" else None)
    if status in (401, 403):
        return UpstreamError(
            f"The upstream model server rejected gptoss's credentials (HTTP {status}); check the key named by "
            "--upstream-api-key-env.", code="upstream_auth_failed")
    if status == 404:
        return UpstreamError(f"The upstream model server answered 404: {message} (check --upstream-url and "
                             "--upstream-model).", code="upstream_not_found")
    if status == 413:
        return _TooLarge(f"The upstream model server refused the request as too large: {message}")
    if status == 429:
        return Overloaded(f"The upstream model server is busy: {message}", retry_after=retry_after or 1)
    if status == 503:
        return UpstreamUnavailable(f"The upstream model server is not ready: {message}", retry_after=retry_after or 5)
    if status in (408, 504):
        return UpstreamTimeout(f"The upstream model server timed out (HTTP {status}).")
    if 400 <= status < 500:
        return BadRequest(message, code=code if code != "upstream_error" else None)
    return UpstreamError(f"The upstream model server failed (HTTP {status}): {message}")


__all__ = [
    "UpstreamError",
    "UpstreamTimeout",
    "UpstreamUnavailable",
    "json_or_text",
    "map_status",
    "scrub",
]
