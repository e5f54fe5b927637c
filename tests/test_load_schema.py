"""Property test of the HTTP API from its own OpenAPI schema (schemathesis), against a live server with the load
layers installed and a scripted engine: no 5xx, every status documented, every response matching its schema."""

from __future__ import annotations

import pytest

schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.test_load_http import make_app  # noqa: E402
from tests.serve_fixtures import live_server  # noqa: E402

pytestmark = [pytest.mark.timeout(300), pytest.mark.slow]

POST_EXAMPLES = 120  # the two generation endpoints; the GET ones have few distinct inputs → a few hundred in all
GET_EXAMPLES = 20
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


def test_api_conforms_to_its_openapi_schema():
    app, _ = make_app(max_concurrency=2, max_queue=64)
    with live_server(app) as base:
        schema = schemathesis.openapi.from_url(base + "/openapi.json")
        operations = [result.ok() for result in schema.get_all_operations()]
        assert any(op.path == "/v1/chat/completions" for op in operations)
        seen: list[int] = []
        for operation in operations:

            @settings(max_examples=POST_EXAMPLES if operation.method.upper() == "POST" else GET_EXAMPLES, deadline=None, database=None, derandomize=True,
                      suppress_health_check=list(HealthCheck))
            @given(case=operation.as_strategy())
            def check(case):
                response = case.call(base_url=base, timeout=15)
                seen.append(response.status_code)
                case.validate_response(response, checks=CHECKS)

            check()
        assert len(seen) >= 200
        assert all(status < 500 for status in seen)
