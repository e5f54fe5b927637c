"""``ServeSettings``: everything the HTTP server needs to know, as one frozen value.

Built from the resolved configuration (``from_config``) by the CLI, or directly in tests. The server never reads the
environment itself.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from gptoss_cli.config import Secret, Settings
from gptoss_cli.errors import ConfigError
from gptoss_cli.serve.options import EFFORTS, flag_name, normalise_host, problem


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
    # Read by the scheduler / metrics / cache layers (not by the HTTP layer itself).
    max_concurrency: int = 4
    max_queue: int = 32
    request_timeout: float = 600.0
    drain_timeout: float = 30.0
    kv_cache_memory: str = "1GiB"
    cache: bool = True
    cache_url: str | None = None
    log_format: str = "text"
    log_prompts: bool = False

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
    def from_config(cls, settings: Settings, **overrides: Any) -> "ServeSettings":
        """Take the ``serve.*`` values of the resolved configuration (``overrides`` win)."""
        serve = settings.section("serve")
        values: dict[str, Any] = {}
        for name in cls.__dataclass_fields__:
            if name in serve and serve[name] is not None:
                values[name] = serve[name]
        if "aliases" in values:
            values["aliases"] = tuple(values["aliases"])
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


def host_is_loopback(host: str) -> bool:
    """Whether listening on ``host`` stays on this machine (``localhost``, 127.0.0.0/8, ::1)."""
    if host in ("localhost", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


__all__ = ["EFFORTS", "ServeSettings", "host_is_loopback"]
