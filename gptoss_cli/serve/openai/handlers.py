"""The error handlers of the app: every failure answers with the OpenAI error envelope and the right status."""

from __future__ import annotations

import logging
from typing import Any

from gptoss_cli.serve.errors import APIError, BadRequest, RouteNotFound, api_error_for
from gptoss_cli.serve.openai.protocol import LONE_SURROGATE_ERROR

log = logging.getLogger("gptoss.serve")


def install(app: Any) -> None:
    """Register the handlers on a FastAPI ``app``."""
    from fastapi.exceptions import RequestValidationError
    from starlette.exceptions import HTTPException as StarletteHTTPException

    app.add_exception_handler(APIError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)


def _json_error(exc: APIError) -> Any:
    from starlette.responses import Response

    return Response(exc.body(), status_code=exc.status, headers=exc.headers, media_type="application/json")


async def _api_error(request: Any, exc: Exception) -> Any:
    assert isinstance(exc, APIError)
    return _json_error(exc)


async def _validation_error(request: Any, exc: Exception) -> Any:
    errors = list(getattr(exc, "errors", lambda: [])())
    if not errors:
        return _json_error(BadRequest("Invalid request."))
    first = errors[0]
    loc = [str(p) for p in first.get("loc", ()) if p != "body"]
    if first.get("type") == LONE_SURROGATE_ERROR:  # raised for the whole body: the path is in its context
        where = str((first.get("ctx") or {}).get("param") or "") or None
        return _json_error(BadRequest(str(first.get("msg", "Invalid Unicode in the request.")), param=where))
    if first.get("type") == "json_invalid":
        return _json_error(BadRequest(f"Request body is not valid JSON: {first.get('msg', '')}."))
    if not loc:
        return _json_error(BadRequest("The request body must be a JSON object (Content-Type: application/json)."))
    param = _dotted(loc) or None
    message = f"{param}: {first.get('msg', 'invalid value')}" if param else str(first.get("msg", "Invalid request"))
    if len(errors) > 1:
        message += f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
    return _json_error(BadRequest(message, param=param))


def _dotted(loc: list[str]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if part.isdigit() else (f".{part}" if out else part)
    return out


async def _http_error(request: Any, exc: Exception) -> Any:
    status = getattr(exc, "status_code", 500)
    if status == 404:
        return _json_error(RouteNotFound(f"Unknown path {request.url.path}."))
    if status == 405:
        allow = (getattr(exc, "headers", None) or {}).get("Allow") or _allowed_methods(request)
        return _json_error(RouteNotFound(f"Method {request.method} is not allowed on {request.url.path}.",
                                         code="method_not_allowed", status=405,
                                         headers={"Allow": allow} if allow else None))
    err = APIError(str(getattr(exc, "detail", "")) or "Request failed.", status=status)
    if status < 500:
        err.type = "invalid_request_error"
        err.code = None
    return _json_error(err)


def _allowed_methods(request: Any) -> str:
    """The methods the app's routes accept on this path (for the ``Allow`` header of a 405)."""
    from starlette.routing import Match

    methods: set[str] = set()
    for route in getattr(request.app, "routes", ()):
        match, _ = route.matches({**request.scope, "method": "GET"})
        if match != Match.NONE and getattr(route, "methods", None):
            methods.update(route.methods)
    methods.discard("HEAD")
    return ", ".join(sorted(methods))


async def _unexpected_error(request: Any, exc: Exception) -> Any:
    mapped = api_error_for(exc)
    if mapped is not None:
        return _json_error(mapped)
    log.exception("unexpected error on %s", request.url.path)
    return _json_error(APIError("Internal server error."))


__all__ = ["install"]
