"""What a registration promises Dify about reasoning and structured output, decided per Dify/plugin version.

Reasoning (``--show-reasoning/--hide-reasoning``):

- shown: ``agent_thought_support: supported`` where the schema has it. Dify 0.15 shows streamed reasoning as a
  "Thinking..." block; the gptoss renderer drops that block from the history Dify sends back.
- hidden-by-dify: the schema has ``agent_thought_support`` and the plugin filters (0.0.33+): ``not_supported``.
- hidden-by-server: no such switch (Dify 0.15, plugins before 0.0.33): the model is registered at the server's
  no-reasoning mount, ``…/no-reasoning/v1`` (serve/openai/no_reasoning.py), which answers like ``/v1`` without reasoning.

Structured output: ``structured_output_support: supported`` makes Dify send ``response_format`` ``json_schema``. It is
registered only when the endpoint answered such a request, shaped as Dify sends it, with JSON that satisfies the
schema (or when forced); an endpoint that cannot (the demo model) is registered ``not_supported``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Mapping
from urllib.parse import urlsplit, urlunsplit

import httpx
from packaging.version import InvalidVersion, Version

from gptoss_cli.config import Secret
from gptoss_cli.serve.openai.no_reasoning import NO_REASONING_PREFIX

FILTERING_PLUGIN = Version("0.0.33")  # the openai_api_compatible plugin hides <think> with not_supported from here
HIDE_NOTE = ("hiding changes what Dify shows and stores, not what the model does: gpt-oss still reasons before "
             "every answer (same tokens, same latency); to spend fewer reasoning tokens, run gptoss serve with "
             "--reasoning-effort low")
PROBE_SCHEMA = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}
HANDLED_FIELDS = ("agent_thought_support", "structured_output_support")  # absent: handled here, not a warning


def schema_has(schema: Mapping[str, Any] | None, variable: str) -> bool:
    return any(f.get("variable") == variable for f in (schema or {}).get("credential_form_schemas") or ())


@dataclass(frozen=True)
class ReasoningPlan:
    mode: str  # shown | hidden-by-dify | hidden-by-server
    endpoint_url: str  # what Dify is given: the no-reasoning mount for hidden-by-server
    note: str | None


def no_reasoning_url(endpoint: str) -> str:
    """``http://h:8000/v1`` → ``http://h:8000/no-reasoning/v1`` (a path prefix before ``/v1`` is kept)."""
    parts = urlsplit(endpoint)
    base = parts.path[: -len("/v1")] if parts.path.endswith("/v1") else parts.path.rstrip("/")
    return urlunsplit((parts.scheme, parts.netloc, f"{base}{NO_REASONING_PREFIX}/v1", "", ""))


def plan_reasoning(schema: Mapping[str, Any] | None, endpoint: str, show: bool, plugin_version: str | None,
                   dify_version: str) -> ReasoningPlan:
    if show:
        return ReasoningPlan("shown", endpoint, None)
    if schema_has(schema, "agent_thought_support") and _filters(plugin_version):
        return ReasoningPlan("hidden-by-dify", endpoint,
                             "reasoning hidden by Dify (agent_thought_support=not_supported); " + HIDE_NOTE)
    where = f"plugin {plugin_version}" if plugin_version else f"Dify {dify_version}"
    return ReasoningPlan("hidden-by-server", no_reasoning_url(endpoint),
                         f"reasoning hidden by the server: {where} has no switch for it, so the model is registered "
                         f"at {NO_REASONING_PREFIX}/v1, where gptoss serve sends no reasoning; " + HIDE_NOTE)


def _filters(plugin_version: str | None) -> bool:
    if not plugin_version:
        return True  # unknown (or just installed from the marketplace): a current plugin
    try:
        return Version(plugin_version) >= FILTERING_PLUGIN
    except InvalidVersion:
        return True


def _headers(api_key: Secret | None) -> dict[str, str]:
    headers = {"Accept": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key.reveal()}"
    return headers


def mount_problem(http: httpx.Client, url: str, api_key: Secret | None) -> str | None:
    """Why ``url`` (the no-reasoning mount) is unusable, or None (also when it cannot be reached from here)."""
    try:
        resp = http.get(url.rstrip("/") + "/models", headers=_headers(api_key), timeout=httpx.Timeout(30, connect=10))
    except httpx.HTTPError:
        return None  # Dify may still reach it from its own network; its validation will tell
    if resp.status_code == 404:
        return (f"{url} answers 404: the endpoint is not a gptoss serve with the {NO_REASONING_PREFIX} mount, "
                "and this Dify version has no switch to hide reasoning")
    return None


def probe_structured_output(http: httpx.Client, endpoint: str, model: str, api_key: Secret | None,
                            timeout: float = 120.0) -> str | None:
    """Send a ``json_schema`` request as Dify's plugin does; None when the answer satisfies it, else why not."""
    body = {"model": model, "max_tokens": 1024, "reasoning_effort": "low",
            "messages": [{"role": "user", "content": 'Answer with the JSON object {"ok": true} and nothing else.'}],
            "response_format": {"type": "json_schema",
                                "json_schema": {"name": "llm_response", "schema": PROBE_SCHEMA}}}
    try:
        resp = http.post(endpoint.rstrip("/") + "/chat/completions", json=body, headers=_headers(api_key),
                         timeout=httpx.Timeout(timeout, connect=10))
    except httpx.HTTPError as exc:
        return f"the request failed ({' '.join(str(exc).split()) or type(exc).__name__})"
    try:
        data: Any = resp.json()
    except ValueError:
        data = None
    if resp.status_code != 200:
        error = (data or {}).get("error") if isinstance(data, dict) else None
        code = error.get("code") if isinstance(error, dict) else None
        return f"HTTP {resp.status_code}" + (f" {code}" if code else "")
    try:
        content = data["choices"][0]["message"]["content"]
        value = json.loads(content)
    except (KeyError, IndexError, TypeError, ValueError):
        return "the answer was not JSON"
    if not (isinstance(value, dict) and isinstance(value.get("ok"), bool)):
        return "the answer did not match the schema"
    return None


__all__ = ["HANDLED_FIELDS", "HIDE_NOTE", "ReasoningPlan", "mount_problem", "no_reasoning_url", "plan_reasoning",
           "probe_structured_output", "schema_has"]
