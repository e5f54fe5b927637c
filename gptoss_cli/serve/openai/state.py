"""``ServerState``: everything a request handler may use, built once by ``create_app`` and frozen.

The only things that change while the server runs are in ``LoadStatus`` (the engine loading, then ready or failed);
the collaborators themselves — settings, engine, scheduler, cache, metrics, pipeline — are fixed at construction.
Handlers get it with ``server_state(request)``; nothing reads ``app.state`` attributes by name elsewhere.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from gptoss_cli.serve.engines.interface import answers_requests
from gptoss_cli.serve.errors import NotReady
from gptoss_cli.serve.generation.cache import ResponseCache, open_cache
from gptoss_cli.serve.generation.pipeline import Pipeline
from gptoss_cli.serve.generation.scheduler import Scheduler
from gptoss_cli.serve.openai.journaling import Journal, open_journal
from gptoss_cli.serve.openai.keyring import KeyRing
from gptoss_cli.serve.openai.params import ModelInfo
from gptoss_cli.serve.openai.quota import Quota
from gptoss_cli.serve.settings import ServeSettings


@dataclass
class LoadStatus:
    """Where the engine's start stands: loading → ready (``model_info`` set for token engines) or failed."""

    ready: bool = False
    error: str | None = None  # one line, when loading failed
    model_info: ModelInfo | None = None
    gpu_metrics: Any = None  # the NVML sampler (generation/gpu_metrics.py) when the engine runs on CUDA


@dataclass(frozen=True)
class ServerState:
    settings: ServeSettings
    engine: Any  # an Engine (token ids) or a ChatBackend (whole requests): engines/interface.py
    scheduler: Scheduler
    metrics: Any  # ServeMetrics
    cache: ResponseCache | None
    pipeline: Pipeline
    policy: Any = None  # a PolicyHolder (serve/policy/) with --policy, else None
    keys: KeyRing | None = None  # --api-key and the keys file (None: no authentication)
    quota: Quota | None = None  # the keys' rpm/tpm limits and per-key metrics
    journal: Journal | None = None  # --journal
    key_policies: Any = None  # KeyPolicies: the policy files named by API keys (gptoss keys add --policy)
    status: LoadStatus = field(default_factory=LoadStatus)
    created: int = field(default_factory=lambda: int(time.time()))

    @property
    def relays(self) -> bool:
        """Whether the engine answers whole requests (vLLM, an upstream) rather than token ids."""
        return answers_requests(self.engine)

    def model_info(self) -> ModelInfo:
        """The loaded model's info (token engines), or 503 while loading or after a failed load."""
        status = self.status
        if not status.ready or status.model_info is None:
            if status.error:
                raise NotReady("The model failed to load; see the server log.")
            raise NotReady()
        return status.model_info

    def reload_policies(self) -> None:
        """SIGHUP: read the server's policy file and the keys' policy files again (a bad file keeps the old one)."""
        if self.policy is not None:
            self.policy.reload()
        if self.key_policies is not None:
            self.key_policies.reload()

    async def drain(self, timeout: float) -> bool:
        """Shutdown: refuse new requests, let admitted ones finish up to ``timeout``, close the cache."""
        clean = await self.scheduler.drain(timeout)
        if self.cache is not None:
            await self.cache.close()
        return clean


def build_state(settings: ServeSettings, engine: Any, metrics: Any = None) -> ServerState:
    """The state for ``engine`` under ``settings`` (``metrics``: the ``ServeMetrics`` the engine's hooks report to,
    when the caller built the engine with them; else a new one)."""
    from gptoss_cli.serve.generation.metrics import ServeMetrics

    metrics = metrics if metrics is not None else ServeMetrics()
    scheduler = Scheduler(
        max_concurrency=settings.max_concurrency,
        max_queue=settings.max_queue,
        request_timeout=settings.request_timeout,
        on_event=metrics.scheduler_event,
    )
    metrics.watch_scheduler(scheduler)
    if answers_requests(engine):
        metrics.track_upstream()
    cache = open_cache(settings.cache_url, settings.cache)
    pipeline = Pipeline(
        engine,
        scheduler,
        cache=cache,
        metrics=metrics,
        model_id=f"{settings.served_model_name}|{getattr(engine, 'description', '')}",
        log_prompts=settings.log_prompts,
    )
    keys = KeyRing(settings.keys_file, settings.api_key) if settings.keys_file or settings.api_key else None
    return ServerState(settings, engine, scheduler, metrics, cache, pipeline, policy=_policy(settings, metrics),
                       keys=keys, quota=Quota(metrics.registry), journal=open_journal(settings),
                       key_policies=_key_policies(keys, metrics))


def _key_policies(keys: Any, metrics: Any) -> Any:
    """The holder of the keys' own policy files, when there are named keys (no policy code is loaded otherwise)."""
    if keys is None or keys.path is None:
        return None
    from gptoss_cli.serve.policy import KeyPolicies

    return KeyPolicies(on_reload=metrics.policy_reload)


def _policy(settings: ServeSettings, metrics: Any) -> Any:
    if not settings.policy:
        return None
    from gptoss_cli.errors import ConfigError
    from gptoss_cli.serve.policy import PolicyError, PolicyHolder

    try:
        return PolicyHolder(settings.policy, on_reload=metrics.policy_reload)
    except PolicyError as exc:
        raise ConfigError(f"--policy {settings.policy}: {exc}") from None


def server_state(request: Any) -> ServerState:
    """The ``ServerState`` of the app handling ``request``."""
    return request.app.state.server


__all__ = ["LoadStatus", "ServerState", "build_state", "server_state"]
