"""Property tests of the HTTP API from its own OpenAPI schema (schemathesis), against a live server with the load
layers installed and a scripted engine.

1. The Python API, positive data: no 5xx, every status documented, every response matching its schema.
2. The command line, exactly as an outside fuzzer runs it: ``st run --checks all`` (positive and negative data,
   boundary values, undeclared methods, missing and ignored auth, response headers and schemas), with an API key
   configured. The schema is the contract: every failure it reports must be one of the few things JSON Schema
   cannot say (listed in ``TOLERATED``), checked on the server's own answer.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import pytest

schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from gptoss_cli.config import Secret  # noqa: E402
from tests.test_load_http import make_app  # noqa: E402
from tests.serve_fixtures import live_server  # noqa: E402

pytestmark = [pytest.mark.timeout(300), pytest.mark.slow]

POST_EXAMPLES = 120  # the two generation endpoints; the GET ones have few distinct inputs → a few hundred in all
GET_EXAMPLES = 20
CLI_EXAMPLES = 25  # per operation and phase; the whole command line run stays well under a minute here
KEY = "sk-schemathesis-0123456789"


def no_undocumented_server_error(ctx, response, case):
    """``not_a_server_error``, except the documented 500 of a response_format the scripted model cannot satisfy."""
    status, error = response.status_code, _body_error(response.content)
    if tolerated("not_a_server_error", status, error):
        return None
    return not_a_server_error(ctx, response, case)


CHECKS = [no_undocumented_server_error, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance]


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
                if response.status_code >= 500:
                    assert tolerated("not_a_server_error", response.status_code, _body_error(response.content))
                case.validate_response(response, checks=CHECKS)

            check()
        assert len(seen) >= 200


def _body_error(raw: bytes) -> dict:
    try:
        body = json.loads(raw)
    except ValueError:
        return {}
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, dict) else {}


def _error(interaction: dict) -> tuple[int, dict]:
    response = interaction["response"]
    content = response.get("content") or {}
    raw = base64.b64decode(content["$base64"]) if "$base64" in content else str(content).encode()
    return response["status_code"], _body_error(raw)


def tolerated(check: str, status: int, error: dict) -> bool:
    """What JSON Schema cannot say, answered as documented (see ``protocol.py``'s docstring)."""
    if check == "positive_data_acceptance" and status == 400:
        return (error.get("code") == "context_length_exceeded"  # prompt + max_tokens over the context
                or error.get("param") in ("tool_choice", "function_call")  # must name one of the given tools
                or (error.get("param") == "response_format" and "JSON Schema" in error.get("message", "")))
    if check == "not_a_server_error" and status == 500:
        # the scripted model cannot satisfy a random response_format schema; the server says so, as documented
        return error.get("code") == "response_format_unsatisfied"
    return False


def _failures(events: Path) -> tuple[list[tuple[str, int, dict]], int]:
    failures: list[tuple[str, int, dict]] = []
    calls = 0
    for line in events.read_text().splitlines():
        finished = json.loads(line).get("ScenarioFinished")
        if not finished:
            continue
        recorder = finished["recorder"]
        interactions = recorder.get("interactions", {})
        calls += len(interactions)
        for case_id, checks in recorder.get("checks", {}).items():
            for check in checks:
                if check.get("status") == "failure":
                    status, error = _error(interactions[case_id]) if case_id in interactions else (0, {})
                    failures.append((check["name"], status, error))
    return failures, calls


def test_schemathesis_checks_all_finds_nothing_but_what_json_schema_cannot_say(tmp_path):
    if int(schemathesis.__version__.split(".")[0]) < 4:
        pytest.skip("the command line checks need schemathesis 4")
    app, _ = make_app(max_concurrency=4, max_queue=256, api_key=Secret(KEY))
    events = tmp_path / "events.ndjson"
    with live_server(app) as base:
        run = subprocess.run(
            [sys.executable, "-m", "schemathesis.cli", "run", base + "/openapi.json", "--checks", "all",
             "-n", str(CLI_EXAMPLES), "--seed", "20261203", "--generation-database", "none", "--workers", "1",
             "--continue-on-failure", "--request-timeout", "15", "--no-color", "--output-sanitize", "false",
             "-H", f"Authorization: Bearer {KEY}", "--report", "ndjson", "--report-ndjson-path", str(events)],
            capture_output=True, text=True, timeout=240, cwd=tmp_path,
        )
    assert events.is_file(), run.stdout[-3000:] + run.stderr[-3000:]
    failures, calls = _failures(events)
    assert calls >= 300, run.stdout[-3000:]
    unexpected = [f for f in failures if not tolerated(*f)]
    assert unexpected == [], run.stdout[-6000:]
