"""Typed API errors and the OpenAI error envelope.

Every error the server answers with is one of these classes; each carries its HTTP status, OpenAI ``type`` and
``code``. Handlers map classes, never message text. Bodies never contain stack traces or secrets::

    {"error": {"message": "...", "type": "invalid_request_error", "param": "n", "code": "invalid_value"}}

    APIError                     500 server_error
    ├── BadRequest               400 invalid_request_error
    │   └── ContextLengthExceeded 400 invalid_request_error / context_length_exceeded
    ├── Unauthorized             401 authentication_error / invalid_api_key
    ├── ModelNotFound            404 invalid_request_error / model_not_found
    ├── RouteNotFound            404 invalid_request_error / not_found (also 405 via ``status``)
    ├── BodyTooLarge             413 invalid_request_error / request_too_large
    ├── Overloaded               429 rate_limit_error / overloaded (+ Retry-After)
    ├── EngineFailure            500 server_error / engine_error
    │   └── ResponseFormatFailed 500 server_error / response_format_unsatisfied
    └── NotReady                 503 server_error / model_not_ready (+ Retry-After)
"""

from __future__ import annotations

import json
import math
from typing import Any


class APIError(Exception):
    """Base: an error answered to the client in the OpenAI envelope."""

    status: int = 500
    type: str = "server_error"
    code: str | None = "internal_error"

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        status: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = " ".join(message.split())
        self.param = param
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.headers = dict(headers or {})

    def envelope(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def body(self) -> bytes:
        # a message that echoes client text with a lone surrogate must still encode (as an escape), never raise
        return json.dumps(self.envelope(), ensure_ascii=False).encode("utf-8", "backslashreplace")


class BadRequest(APIError):
    status = 400
    type = "invalid_request_error"
    code = "invalid_value"


class ContextLengthExceeded(BadRequest):
    code = "context_length_exceeded"

    def __init__(self, *, limit: int, prompt_tokens: int, completion_tokens: int | None, param: str) -> None:
        if completion_tokens is None:
            text = (
                f"This model's maximum context length is {limit} tokens. However, your prompt is "
                f"{prompt_tokens} tokens, which leaves no room for a completion. Please reduce the length of "
                f"the {param}."
            )
        else:
            text = (
                f"This model's maximum context length is {limit} tokens. However, you requested "
                f"{prompt_tokens + completion_tokens} tokens ({prompt_tokens} in the {param}, "
                f"{completion_tokens} in the completion). Please reduce the length of the {param} or completion."
            )
        super().__init__(text, param=param)
        self.limit = limit
        self.prompt_tokens = prompt_tokens
        self.completion_tokens = completion_tokens


class Unauthorized(APIError):
    status = 401
    type = "authentication_error"
    code = "invalid_api_key"

    def __init__(self, message: str) -> None:
        super().__init__(message, headers={"WWW-Authenticate": "Bearer"})


class ModelNotFound(APIError):
    status = 404
    type = "invalid_request_error"
    code = "model_not_found"

    def __init__(self, requested: str, known: tuple[str, ...]) -> None:
        names = ", ".join(known)
        super().__init__(
            f"The model {requested!r} does not exist. This server serves: {names}.", param="model"
        )


class RouteNotFound(APIError):
    status = 404
    type = "invalid_request_error"
    code = "not_found"


class BodyTooLarge(APIError):
    status = 413
    type = "invalid_request_error"
    code = "request_too_large"

    def __init__(self, limit: int) -> None:
        super().__init__(f"Request body is larger than the limit of {limit} bytes.")


class Overloaded(APIError):
    status = 429
    type = "rate_limit_error"
    code = "overloaded"

    def __init__(self, message: str = "The server is busy; retry shortly.", *, retry_after: int = 1) -> None:
        super().__init__(message, headers={"Retry-After": str(retry_after)})


class EngineFailure(APIError):
    status = 500
    type = "server_error"
    code = "engine_error"


class ResponseFormatFailed(EngineFailure):
    code = "response_format_unsatisfied"


class NotReady(APIError):
    status = 503
    type = "server_error"
    code = "model_not_ready"

    def __init__(self, message: str = "The model is still loading; retry shortly.", *, retry_after: int = 5):
        super().__init__(message, headers={"Retry-After": str(retry_after)})


def api_error_for(exc: BaseException) -> APIError | None:
    """``exc`` as an APIError when it is one or declares its own HTTP mapping, else None.

    Exceptions from other layers (e.g. the scheduler's refusals) may carry class attributes ``status`` (int),
    ``code`` (str) and ``type`` (str), plus an optional ``retry_after`` (seconds); those keep their status instead of
    becoming a 500.
    """
    if isinstance(exc, APIError):
        return exc
    cls = type(exc)
    status, code = getattr(cls, "status", None), getattr(cls, "code", None)
    if not (isinstance(status, int) and 400 <= status < 600 and isinstance(code, str)):
        return None
    headers: dict[str, str] = {}
    retry_after = getattr(exc, "retry_after", None)
    if isinstance(retry_after, (int, float)) and not isinstance(retry_after, bool):
        headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
    err = APIError(str(exc) or code, code=code, status=status, headers=headers)
    kind = getattr(cls, "type", None)
    err.type = kind if isinstance(kind, str) else ("invalid_request_error" if status < 500 else "server_error")
    return err


__all__ = [
    "api_error_for",
    "APIError",
    "BadRequest",
    "BodyTooLarge",
    "ContextLengthExceeded",
    "EngineFailure",
    "ModelNotFound",
    "NotReady",
    "Overloaded",
    "ResponseFormatFailed",
    "RouteNotFound",
    "Unauthorized",
]
