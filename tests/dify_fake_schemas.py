"""Credential form schemas the fake Dify reports (reference/dify-api.md §3), as Dify's API would serialise them.

- Dify 0.15: the built-in provider; a field without ``required:`` in its YAML is required, so it is dumped as True.
- Dify 1.5: plugin 0.0.20 (no agent_thought_support yet); Dify 1.9.1 / 1.13: plugin 0.0.63.
"""

from __future__ import annotations

from typing import Any

from packaging.version import Version

PLUGIN_ID = "langgenius/openai_api_compatible"
LLM = [{"variable": "__model_type", "value": "llm"}]
EMBED = [{"variable": "__model_type", "value": "text-embedding"}]


def _f(var: str, type_: str, required: bool, default: str | None = None, options: tuple[str, ...] = (),
       show_on: list | None = None) -> dict[str, Any]:
    return {"variable": var, "label": {"en_US": var}, "type": type_, "required": required, "default": default,
            "options": [{"value": o, "label": {"en_US": o}, "show_on": []} for o in options],
            "show_on": show_on if show_on is not None else LLM, "placeholder": None, "max_length": 0}


YES_NO = ("supported", "not_supported")
SUPPORT = ("support", "no_support")

BUILTIN_015 = [
    _f("api_key", "secret-input", False, show_on=[]),
    _f("endpoint_url", "text-input", True, show_on=[]),
    _f("mode", "select", True, "chat", ("chat", "completion")),
    _f("context_size", "text-input", True, "4096"),
    _f("max_tokens_to_sample", "text-input", True, "4096"),
    _f("function_calling_type", "select", True, "no_call", ("function_call", "tool_call", "no_call")),
    _f("stream_function_calling", "select", True, "not_supported", YES_NO),
    _f("vision_support", "select", True, "no_support", SUPPORT),
    _f("stream_mode_delimiter", "text-input", True, "\\n\\n"),
]

_PLUGIN_BASE = [
    _f("display_name", "text-input", False, show_on=[]),
    _f("api_key", "secret-input", False, show_on=[]),
    _f("endpoint_url", "text-input", True, show_on=[]),
    _f("endpoint_model_name", "text-input", False, show_on=[]),
    _f("mode", "select", False, "chat", ("chat", "completion")),
    _f("context_size", "text-input", True, "4096"),
    _f("max_tokens_to_sample", "text-input", False, "4096"),
    _f("function_calling_type", "select", False, "no_call", ("function_call", "tool_call", "no_call")),
    _f("stream_function_calling", "select", False, "not_supported", YES_NO),
    _f("vision_support", "select", False, "no_support", SUPPORT),
    _f("structured_output_support", "select", False, "not_supported", YES_NO),
    _f("stream_mode_delimiter", "text-input", False, "\\n\\n"),
    _f("max_chunks", "text-input", True, "1", show_on=EMBED),
]

PLUGIN_0020 = list(_PLUGIN_BASE)

PLUGIN_0063 = _PLUGIN_BASE + [
    _f("agent_thought_support", "select", False, "not_supported",
       ("not_supported", "supported", "only_thinking_supported")),
    _f("web_search_support", "select", False, "not_supported",
       ("not_supported", "tool_standard", "tool_simple", "parameter")),
    _f("compatibility_mode", "select", False, "strict", ("strict", "extended")),
    _f("token_param_name", "select", False, "auto", ("auto", "max_tokens", "max_completion_tokens")),
    _f("user_identity_support", "select", False, "support", ("support", "no_support")),
    _f("stream_include_usage", "select", False, "enabled", ("enabled", "disabled")),
    _f("stream_mode_auth", "select", False, "not_use", ("use", "not_use")),
]


def schema_for(version: str) -> dict[str, Any]:
    v = Version(version)
    if v < Version("1.0.0"):
        forms = BUILTIN_015
    elif v < Version("1.8.0"):
        forms = PLUGIN_0020
    else:
        forms = PLUGIN_0063
    return {"model": {"label": {"en_US": "Model Name"}, "placeholder": {"en_US": "Enter full model name"}},
            "credential_form_schemas": forms}
