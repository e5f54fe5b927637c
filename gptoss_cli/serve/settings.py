"""``ServeSettings``: everything ``gptoss serve`` needs to know — the HTTP front, the pipeline and the engine — as one
frozen value.

Built from the resolved configuration (``from_config``) by the CLI, or directly in tests. Nothing under ``serve/``
reads settings from the environment or the raw ``Settings`` itself.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from gptoss_cli.config import Secret, Settings, read_env
from gptoss_cli.errors import ConfigError, UsageError
from gptoss_cli.serve.options import EFFORTS, flag_name, normalise_host, problem


# vLLM batches hundreds of sequences itself: the front's own admission limits only guard against floods.
REQUEST_LEVEL_CONCURRENCY = 256
REQUEST_LEVEL_QUEUE = 1024


@dataclass(frozen=True)
class ServeSettings:
    """Server behaviour. ``api_key`` is a ``Secret``; ``None`` means no authentication."""

    host: str = "127.0.0.1"
    port: int = 8000
    served_model_name: str = "gpt-oss-20b"
    aliases: tuple[str, ...] = ()
    api_key: Secret | None = None
    max_model_len: int | None = None  # None: the engine's own limit
    reasoning_effort: str = "medium"
    current_date: str | None = None  # None: today's date (UTC) in every prompt
    knowledge_cutoff: str = "2024-06"
    max_body_bytes: int = 4 * 1024 * 1024
    response_format_retries: int = 2  # extra attempts when the final answer does not match response_format
    owned_by: str = "gptoss"
    # Read by the pipeline: scheduler, response cache, access log (generation/, openai/state.py).
    max_concurrency: int = 4
    max_queue: int = 32
    request_timeout: float = 600.0
    drain_timeout: float = 30.0
    kv_cache_memory: str = "1GiB"
    cache: bool = True
    cache_url: str | None = None
    log_format: str = "text"
    log_prompts: bool = False
    policy: str | None = None  # --policy FILE (serve/policy/): checked when set, loaded by the app
    # Named API keys and the request journal (openai/keyring.py, openai/journaling.py).
    keys_file: Path | None = None  # from_config: <home>/keys.json when it exists
    journal: Path | None = None
    journal_max_bytes: str | int | None = None  # rotate past this size (None: never)
    journal_on_error: str = "refuse"  # refuse (503) | continue
    journal_prompts: bool = False  # full prompt and completion text in the journal, not only their SHA-256
    # The engine (engines/build.py).
    engine: str = "transformers"  # transformers | vllm | upstream
    device: str = "auto"
    dtype: str = "auto"
    mxfp4: str = "auto"  # auto | native | packed | dequantise (serve/engines/transformers/plan.py)
    decode_step: str = "fast"  # fast | transformers (serve/engines/transformers/decode_step.py)
    upstream_url: str | None = None
    upstream_api_key: Secret | None = None  # read from the variable --upstream-api-key-env names
    upstream_model: str | None = None
    tensor_parallel_size: int = 1
    pipeline_parallel_size: int = 1
    distributed_executor_backend: str | None = None
    vllm_args: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        """The same rules as ``check_serve_options`` (``serve/options.py``), for values built in code."""
        object.__setattr__(self, "host", normalise_host(self.host))
        for name in self.__dataclass_fields__:
            issue = problem(name, getattr(self, name))
            if issue is not None:
                raise ConfigError(f"{flag_name(name)} {issue}, got {getattr(self, name)!r}")

    @property
    def model_names(self) -> tuple[str, ...]:
        """Every name a request may use for the model: the served name first, then the aliases."""
        seen: dict[str, None] = {self.served_model_name: None}
        for alias in self.aliases:
            seen.setdefault(alias, None)
        return tuple(seen)

    @property
    def is_loopback(self) -> bool:
        return host_is_loopback(self.host)

    @classmethod
    def from_config(cls, settings: Settings, env: Mapping[str, str] | None = None,
                    **overrides: Any) -> "ServeSettings":
        """Take the ``serve.*`` values of the resolved configuration (``overrides`` win). A request-level engine
        batches itself, so unless set, the front's own limits only guard against floods."""
        serve = settings.section("serve")
        values: dict[str, Any] = {}
        for name in cls.__dataclass_fields__:
            if name in serve and serve[name] is not None:
                values[name] = serve[name]
        for name in ("aliases", "vllm_args"):
            if name in values:
                values[name] = tuple(values[name])
        values["upstream_api_key"] = _upstream_key(settings, env)
        if values.get("keys_file") is None and (settings.home / "keys.json").is_file():
            values["keys_file"] = settings.home / "keys.json"  # where `gptoss keys add` writes by default
        given = {k: v for k, v in overrides.items() if v is not None}
        values.update(given)
        if values.get("engine", "transformers") != "transformers":
            for name, wide in (("max_concurrency", REQUEST_LEVEL_CONCURRENCY), ("max_queue", REQUEST_LEVEL_QUEUE)):
                if name not in given and settings.source(f"serve.{name}") == "default":
                    values[name] = wide
        return cls(**values)


def _upstream_key(settings: Settings, env: Mapping[str, str] | None) -> Secret | None:
    name = settings.get("serve.upstream_api_key_env")
    if not name:
        return None
    value = read_env(name, env)
    if value is None:
        raise UsageError(f"--upstream-api-key-env names {name}, which is not set",
                         hint=f"export {name}=... or drop the option for an upstream without a key")
    return Secret(value)


def host_is_loopback(host: str) -> bool:
    """Whether listening on ``host`` stays on this machine (``localhost``, 127.0.0.0/8, ::1)."""
    if host in ("localhost", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


__all__ = ["EFFORTS", "REQUEST_LEVEL_CONCURRENCY", "REQUEST_LEVEL_QUEUE", "ServeSettings", "host_is_loopback"]
