"""The credential form: what gptoss wants to register, filtered through the schema Dify reports at run time.

Dify validates credentials against the provider's ``model_credential_schema`` (reference/dify-api.md §3.3): only
fields shown for ``__model_type = llm`` are kept, unknown keys are dropped, values must be strings, and select
values must be among the options. So we read that schema and send only what it accepts, as strings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence
from urllib.parse import urlsplit, urlunsplit

from gptoss_cli.dify.errors import DifyError
from gptoss_cli.errors import UsageError

DEFAULT_CONTEXT_SIZE = 131072  # gpt-oss-20b
DEFAULT_MAX_TOKENS = 8192
DELIMITER = "\\n\\n"  # a literal backslash-n pair: the plugin unicode-unescapes it before use

# The fields of the openai_api_compatible plugin (0.0.63) for llm, used only when the plugin is not installed yet
# (a dry run with --install-plugin); otherwise the schema always comes from the running Dify.
_FALLBACK = (
    ("display_name", "text-input", False, None, ()),
    ("api_key", "secret-input", False, None, ()),
    ("endpoint_url", "text-input", True, None, ()),
    ("endpoint_model_name", "text-input", False, None, ()),
    ("mode", "select", False, "chat", ("chat", "completion")),
    ("context_size", "text-input", True, "4096", ()),
    ("max_tokens_to_sample", "text-input", False, "4096", ()),
    ("agent_thought_support", "select", False, "not_supported",
     ("not_supported", "supported", "only_thinking_supported")),
    ("function_calling_type", "select", False, "no_call", ("function_call", "tool_call", "no_call")),
    ("stream_function_calling", "select", False, "not_supported", ("supported", "not_supported")),
    ("structured_output_support", "select", False, "not_supported", ("supported", "not_supported")),
    ("stream_mode_delimiter", "text-input", False, DELIMITER, ()),
)


def fallback_schema() -> dict[str, Any]:
    """A ``model_credential_schema`` shaped like Dify's, for the plan of a not-yet-installed plugin."""
    show = [{"variable": "__model_type", "value": "llm"}]
    forms = [
        {"variable": v, "type": t, "required": r, "default": d, "show_on": show,
         "options": [{"value": o, "show_on": []} for o in opts]}
        for v, t, r, d, opts in _FALLBACK
    ]
    return {"model": {}, "credential_form_schemas": forms}


def normalize_endpoint_url(url: str) -> tuple[str, str | None]:
    """The endpoint as Dify needs it (base URL ending in ``/v1``) and a note when it had to be fixed.

    ``http://h:8000`` and ``http://h:8000/v1/`` and ``…/v1/chat/completions`` are fixed; any other path is refused,
    because Dify appends only ``/chat/completions`` and never adds ``/v1`` for LLMs.
    """
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"--endpoint-url must be an http(s) URL, got {url!r}",
                         hint="e.g. http://host.docker.internal:8000/v1")
    path = parts.path.rstrip("/")
    for suffix in ("/chat/completions", "/completions", "/models"):
        if path.endswith("/v1" + suffix):
            path = path[: -len(suffix)]
    if path == "":
        path = "/v1"
    if not path.endswith("/v1"):
        raise UsageError(f"--endpoint-url must end in /v1, got {url!r}",
                         hint="Dify appends only /chat/completions; use e.g. http://HOST:8000/v1")
    fixed = urlunsplit((parts.scheme, parts.netloc, path, "", ""))
    note = None if fixed == url.strip() else f"endpoint URL {url.strip()!r} changed to {fixed!r} (Dify needs …/v1)"
    return fixed, note


@dataclass(frozen=True)
class Desired:
    """What gptoss wants Dify to store (before the schema filter)."""

    endpoint_url: str
    api_key: str  # "" when the server has no key: the field is then not sent (Dify replaces stored values)
    context_size: int
    max_tokens: int
    show_reasoning: bool = True
    endpoint_model_name: str | None = None
    structured_output: bool = True

    def values(self) -> dict[str, str]:
        out = {
            "endpoint_url": self.endpoint_url,
            "mode": "chat",
            "context_size": str(self.context_size),
            "max_tokens_to_sample": str(self.max_tokens),
            "function_calling_type": "tool_call",
            "stream_function_calling": "supported",
            "agent_thought_support": "supported" if self.show_reasoning else "not_supported",
            "structured_output_support": "supported" if self.structured_output else "not_supported",
            "stream_mode_delimiter": DELIMITER,
        }
        if self.api_key:
            out["api_key"] = self.api_key
        if self.endpoint_model_name:
            out["endpoint_model_name"] = self.endpoint_model_name
        return out


@dataclass(frozen=True)
class CredentialForm:
    credentials: dict[str, str]
    dropped: tuple[str, ...]  # wanted, but this Dify/plugin version does not accept them


def _shown(field: Mapping[str, Any], values: Mapping[str, str], model_type: str) -> bool:
    context = {**values, "__model_type": model_type}
    for cond in field.get("show_on") or ():
        if isinstance(cond, Mapping) and context.get(str(cond.get("variable"))) != cond.get("value"):
            return False
    return True


def build_credentials(schema: Mapping[str, Any] | None, desired: Desired, *, required_default: bool,
                      model_type: str = "llm") -> CredentialForm:
    """Keep only fields the schema shows for ``llm``; all values strings; unknown select values dropped.

    ``required_default`` is what a field without a ``required`` key means (True in 0.15, False in 1.x). A required
    field we have no value for gets the schema default, as Dify 0.15 rejects missing values even when defaulted.
    """
    forms: Sequence[Mapping[str, Any]] = (schema or {}).get("credential_form_schemas") or ()
    wanted = desired.values()
    out: dict[str, str] = {}
    dropped: list[str] = []
    known = set()
    for field in forms:
        name = str(field.get("variable"))
        known.add(name)
        if not _shown(field, wanted, model_type):
            continue
        value = wanted.get(name)
        options = [str(o.get("value") if isinstance(o, Mapping) else o) for o in field.get("options") or ()]
        if value is not None and field.get("type") in ("select", "radio") and options and value not in options:
            dropped.append(name)
            value = None
        required = bool(field.get("required", required_default))
        if value is None or value == "":
            if required and field.get("default") not in (None, ""):
                value = str(field["default"])
            elif required:
                raise DifyError(f"Dify requires credential field {name!r}, which gptoss does not know how to fill",
                                hint="register the model in the Dify UI, or report this Dify/plugin version")
            else:
                continue
        out[name] = str(value)
    dropped.extend(k for k, v in wanted.items() if k not in known and v)
    return CredentialForm(credentials=out, dropped=tuple(sorted(set(dropped))))


__all__ = [
    "DEFAULT_CONTEXT_SIZE",
    "DEFAULT_MAX_TOKENS",
    "DELIMITER",
    "CredentialForm",
    "Desired",
    "build_credentials",
    "fallback_schema",
    "normalize_endpoint_url",
]
