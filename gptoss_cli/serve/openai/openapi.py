"""The ``/openapi.json`` the server publishes: FastAPI's schema plus what FastAPI cannot see from the routes.

- With an API key configured, the ``/v1/*`` operations declare a Bearer security scheme (the key is checked by
  ``middleware.py`` before any route, so FastAPI does not know about it); ``/health``, ``/ready`` and ``/docs`` stay
  open, as they are.
- ``seed`` keeps its exact int64 bounds: FastAPI's OpenAPI models store ``minimum``/``maximum`` as floats, and
  2**63 - 1 as a float is 2**63, a seed the server refuses.

Imported by ``create_app`` only (no heavy imports here).
"""

from __future__ import annotations

from typing import Any, Callable

from gptoss_cli.serve.openai.protocol import INT64_MAX, INT64_MIN

BEARER_SCHEME = "bearerAuth"
_OPERATIONS = ("get", "post", "put", "patch", "delete")


def with_security(schema: dict[str, Any], protected_prefix: str = "/v1/") -> dict[str, Any]:
    """Declare the Bearer scheme on every operation under ``protected_prefix`` (modifies and returns ``schema``)."""
    components = schema.setdefault("components", {})
    components.setdefault("securitySchemes", {})[BEARER_SCHEME] = {"type": "http", "scheme": "bearer"}
    for path, item in schema.get("paths", {}).items():
        if not path.startswith(protected_prefix):
            continue
        for method in _OPERATIONS:
            if method in item:
                item[method]["security"] = [{BEARER_SCHEME: []}]
    return schema


def exact_seed_bounds(schema: dict[str, Any]) -> dict[str, Any]:
    """Put the exact int64 bounds back on every ``seed`` property (modifies and returns ``schema``)."""
    for component in schema.get("components", {}).get("schemas", {}).values():
        seed = component.get("properties", {}).get("seed")
        if not isinstance(seed, dict):
            continue
        for variant in [seed, *seed.get("anyOf", ())]:
            if variant.get("type") == "integer":
                variant["minimum"], variant["maximum"] = INT64_MIN, INT64_MAX
    return schema


def install(app: Any, *, bearer: bool) -> None:
    """Make ``app.openapi()`` (and so ``/openapi.json``) exact about seeds, and declare the Bearer scheme when
    ``bearer``."""
    build: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = exact_seed_bounds(build())
            app.openapi_schema = with_security(schema) if bearer else schema
        return app.openapi_schema

    app.openapi = openapi


__all__ = ["BEARER_SCHEME", "exact_seed_bounds", "install", "with_security"]
