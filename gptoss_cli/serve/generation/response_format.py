"""``response_format`` enforcement by validate-and-retry on the final channel.

We do not constrain decoding (the engine seam passes no logits processor). Instead the answer (final-channel text)
is parsed as JSON and, for ``json_schema``, validated against the schema; a failing answer is generated again (with
sampling on, see ``run_checked`` in ``generation/run.py``) up to ``ServeSettings.response_format_retries`` times, then answered with a 500
``response_format_unsatisfied``. A reply cut by ``max_tokens`` (finish_reason ``length``) or ending in a tool call is
returned as is, like OpenAI does. Validation uses ``jsonschema`` when installed, else ``jsonschema_rs``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable

from gptoss_cli.serve.errors import BadRequest

Validate = Callable[[Any], "str | None"]


@dataclass(frozen=True)
class JsonCheck:
    """How to check one answer: ``schema`` is None for ``json_object`` (any JSON object)."""

    schema: dict[str, Any] | None
    validate: Validate | None = None

    def problem(self, text: str) -> tuple[str, str | None]:
        """Return (cleaned text, None) when ``text`` satisfies the format, else (text, what is wrong)."""
        cleaned = _strip_fence(text)
        try:
            value = json.loads(cleaned)
        except ValueError as exc:
            return text, f"not valid JSON ({exc.msg} at position {exc.pos})"
        if self.schema is None:
            if not isinstance(value, dict):
                return text, "not a JSON object"
            return cleaned, None
        if self.validate is not None:
            error = self.validate(value)
            if error:
                return text, error
        return cleaned, None


def _strip_fence(text: str) -> str:
    """Accept a single Markdown code fence around the JSON (```json … ```); return the JSON text."""
    t = text.strip()
    if t.startswith("```") and t.endswith("```") and len(t) >= 6:
        body = t[3:-3]
        first_nl = body.find("\n")
        if first_nl != -1 and body[:first_nl].strip().isalpha():
            body = body[first_nl + 1 :]
        return body.strip()
    return t


def make_check(schema: dict[str, Any] | None) -> JsonCheck:
    """Build the checker for a request; an invalid schema is the client's error (400)."""
    if schema is None:
        return JsonCheck(schema=None)
    return JsonCheck(schema=schema, validate=_validator(schema))


def _validator(schema: dict[str, Any]) -> Validate | None:
    try:
        import jsonschema  # type: ignore[import-untyped]
    except ImportError:
        jsonschema = None
    if jsonschema is not None:
        cls = jsonschema.validators.validator_for(schema)
        try:
            cls.check_schema(schema)
        except jsonschema.SchemaError as exc:
            raise BadRequest(f"response_format.json_schema.schema is not a valid JSON Schema: {exc.message}",
                             param="response_format") from None
        validator = cls(schema)

        def check(value: Any) -> str | None:
            error = jsonschema.exceptions.best_match(validator.iter_errors(value))
            return None if error is None else f"does not match the schema: {error.message}"

        return check
    try:
        import jsonschema_rs  # type: ignore[import-not-found]
    except ImportError:  # pragma: no cover - neither validator installed: JSON syntax is still checked
        return None
    try:
        rs_validator = jsonschema_rs.validator_for(schema)
    except (jsonschema_rs.ValidationError, ValueError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else "invalid"
        raise BadRequest(f"response_format.json_schema.schema is not a valid JSON Schema: {first}",
                         param="response_format") from None

    def check_rs(value: Any) -> str | None:
        for error in rs_validator.iter_errors(value):
            return f"does not match the schema: {error.message}"
        return None

    return check_rs


__all__ = ["JsonCheck", "make_check"]
