"""Check every ``gptoss serve`` option before anything slow happens (verify, model load, child start).

One rule per setting (``RULES``: value → what is wrong with it, or None). ``check_serve_options(settings, engine)``
applies them to the resolved configuration and raises ``UsageError`` (exit 2) with one line naming the option the
way the user set it (``--port``, ``GPTOSS_SERVE_PORT`` or ``serve.port in ./gptoss.toml``); ``ServeSettings`` applies
the same rules to its own fields. Nothing here imports torch, fastapi or pydantic at module level.
"""

from __future__ import annotations

import ipaddress
import math
import re
from datetime import date
from pathlib import PurePath
from typing import Any, Callable

from gptoss_cli.errors import UsageError

EFFORTS = ("low", "medium", "high")
LOG_FORMATS = ("text", "json")
DTYPES = ("auto", "bfloat16", "float16", "float32")
MXFP4_MODES = ("auto", "native", "packed", "dequantise")  # serve/engines/transformers/plan.py
DECODE_STEPS = ("fast", "transformers")  # serve/engines/transformers/decode_step.py
MIN_KV_CACHE = 1024**2
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*\.?$")
_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
FLOAT16_REFUSED = (
    "--dtype float16 is refused for gpt-oss: its activations overflow float16 and the replies turn into garbage "
    "(\"!!!!\"); use --dtype bfloat16 on a GPU or float32 on the CPU"
)


def parse_size(value: str | int) -> int:
    """``"1GiB"``, ``"512MB"``, ``"2g"``, ``"1.5KiB"``, ``4096`` → bytes (pydantic's ``ByteSize`` rules).

    Raises ValueError on anything else (negative sizes, unknown units, empty text)."""
    from pydantic import ByteSize, TypeAdapter, ValidationError

    if isinstance(value, bool):
        raise ValueError(f"not a size: {value!r}")
    try:
        return int(TypeAdapter(ByteSize).validate_python(value))
    except ValidationError:
        raise ValueError(f"not a size: {value!r} (use e.g. 512MiB or 2GiB)") from None


def normalise_host(host: str) -> str:
    """``[::1]`` → ``::1`` (the bracket form is how URLs write IPv6 addresses; sockets want it bare)."""
    host = str(host).strip()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host


def _host(value: Any) -> str | None:
    host = normalise_host(value)
    try:
        ipaddress.ip_address(host)
        return None
    except ValueError:
        pass
    return None if _HOSTNAME.match(host) else "must be an IP address (127.0.0.1, ::, [::1]) or a host name"


def _int_between(low: int, high: int | None = None) -> Callable[[Any], str | None]:
    def rule(value: Any) -> str | None:
        if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
            return f"must be an integer from {low} to {high}" if high is not None else f"must be at least {low}"
        return None

    return rule


def _seconds(minimum_exclusive: bool) -> Callable[[Any], str | None]:
    def rule(value: Any) -> str | None:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if not ok or value < 0 or (minimum_exclusive and value == 0):
            return "must be a number of seconds above 0" if minimum_exclusive else "must be 0 or more seconds"
        return None

    return rule


def _one_of(choices: tuple[str, ...]) -> Callable[[Any], str | None]:
    return lambda value: None if value in choices else f"must be one of {', '.join(choices)}"


def _kv_cache(value: Any) -> str | None:
    try:
        size = parse_size(value)
    except ValueError:
        return "must be a size such as 512MiB or 8GiB"
    return None if size >= MIN_KV_CACHE else "must be at least 1MiB"


def _date(value: Any) -> str | None:
    if value is None:
        return None
    try:
        if _DATE.match(str(value)):
            date.fromisoformat(str(value))
            return None
    except ValueError:
        pass
    return "must be a date written YYYY-MM-DD"


def _cache_url(value: Any) -> str | None:
    from urllib.parse import urlsplit

    if value is None:
        return None
    scheme = urlsplit(str(value)).scheme.lower()
    return None if scheme in ("redis", "rediss", "unix") else "must start with redis://, rediss:// or unix://"


def _upstream_url(value: Any) -> str | None:
    from urllib.parse import urlsplit

    if value is None:
        return None
    try:
        parts = urlsplit(str(value))
        parts.port  # noqa: B018 - raises ValueError for a port out of range
        ok = parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:
        ok = False
    return None if ok else "must be an http(s)://host[:port][/path] URL"


def _policy(value: Any) -> str | None:
    if value is None:
        return None
    from gptoss_cli.serve.policy.load import PolicyError, load_policy

    try:
        load_policy(str(value))
    except PolicyError as exc:
        return f"is not a usable policy file ({exc})"
    return None
def _journal_size(value: Any) -> str | None:
    if value is None:
        return None
    try:
        size = parse_size(value)
    except ValueError:
        return "must be a size such as 100MiB"
    return None if size >= 4096 else "must be at least 4KiB"


def _journal_path(value: Any) -> str | None:
    from pathlib import Path

    if value is None:
        return None
    path = Path(value)
    return None if path.parent.is_dir() and not path.is_dir() else "must be a file in an existing folder"


def _names(value: Any) -> str | None:
    names = [value] if isinstance(value, str) else list(value or ())
    return None if all(isinstance(n, str) and n.strip() for n in names) else "must not be empty"


def _executor(value: Any) -> str | None:
    if value is None:
        return None
    from gptoss_cli.serve.engines.vllm.backend import EXECUTOR_BACKENDS

    return _one_of(EXECUTOR_BACKENDS)(value)


def _engine(value: Any) -> str | None:
    from gptoss_cli.serve.engines.build import ENGINES

    return _one_of(ENGINES)(value)


RULES: dict[str, Callable[[Any], str | None]] = {
    "host": _host,
    "port": _int_between(0, 65535),
    "served_model_name": _names,
    "aliases": _names,
    "device": lambda v: None if _DEVICE.match(str(v)) else "must be auto, cpu, cuda or cuda:N",
    "dtype": _one_of(DTYPES),
    "mxfp4": _one_of(MXFP4_MODES),
    "decode_step": _one_of(DECODE_STEPS),
    "max_model_len": lambda v: None if v is None else _int_between(2)(v),
    "reasoning_effort": _one_of(EFFORTS),
    "current_date": _date,
    "max_concurrency": _int_between(1),
    "max_queue": _int_between(0),
    "kv_cache_memory": _kv_cache,
    "request_timeout": _seconds(minimum_exclusive=True),
    "drain_timeout": _seconds(minimum_exclusive=False),
    "max_body_bytes": _int_between(1024),
    "cache_url": _cache_url,
    "log_format": _one_of(LOG_FORMATS),
    "policy": _policy,
    "engine": _engine,
    "journal": _journal_path,
    "journal_max_bytes": _journal_size,
    "journal_on_error": _one_of(("refuse", "continue")),
    "upstream_url": _upstream_url,
    "tensor_parallel_size": _int_between(1),
    "pipeline_parallel_size": _int_between(1),
    "distributed_executor_backend": _executor,
}
_FLAGS = {"aliases": "--alias", "vllm_args": "--vllm-arg", "engine": "--engine"}


def flag_name(field: str) -> str:
    return _FLAGS.get(field, "--" + field.replace("_", "-"))


def problem(field: str, value: Any) -> str | None:
    """What is wrong with ``value`` for the serve setting ``field`` (None: nothing)."""
    rule = RULES.get(field)
    return rule(value) if rule is not None else None


def _where(settings: Any, key: str) -> str:
    field = key.split(".", 1)[1]
    source = settings.source(key)
    if source.startswith("env:"):
        return f"{source[4:]} ({flag_name(field)})"
    if source.startswith("file:"):
        return f"{key} in {source[5:]}"
    return flag_name(field)


def check_serve_options(settings: Any, engine: str) -> list[str]:
    """Raise ``UsageError`` for the first invalid ``serve.*`` value; return warnings for doubtful ones."""
    for field in RULES:
        key = f"serve.{field}"
        if key not in settings.values:
            continue
        value = settings[key]
        issue = problem(field, value)
        if issue is not None:
            shown = "''" if value == "" else repr(str(value) if isinstance(value, PurePath) else value)
            raise UsageError(f"{_where(settings, key)} {issue}, got {shown}")
    warnings = []
    if settings["serve.dtype"] == "float16":
        if engine == "transformers":
            raise UsageError(FLOAT16_REFUSED)
        if engine == "vllm":
            warnings.append("--dtype float16 can overflow in gpt-oss (garbage replies); prefer bfloat16")
    return warnings


__all__ = [
    "DTYPES",
    "EFFORTS",
    "FLOAT16_REFUSED",
    "LOG_FORMATS",
    "RULES",
    "check_serve_options",
    "flag_name",
    "normalise_host",
    "parse_size",
    "problem",
]
