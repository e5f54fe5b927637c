"""Build the engine ``ServeSettings.engine`` names, with the hooks it reports to given to its constructor.

``transformers_engine(folder, settings)`` is the in-process model; ``batched(engine, settings, hooks)`` wraps it in
the ``BatchingEngine`` when more than one request may run at once. ``request_engine(settings, hooks, model_dir=…)``
returns ``(backend, warnings)`` for ``vllm`` / ``upstream``; the CLI prints the warnings. Bad combinations are
``UsageError`` (exit 2), a missing ``vllm`` executable ``CouldNotRun`` (exit 3).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Mapping

from gptoss_cli.errors import UsageError
from gptoss_cli.serve.engines.interface import EngineHooks
from gptoss_cli.serve.settings import ServeSettings

ENGINES = ("transformers", "vllm", "upstream")


def check_engine(engine: str) -> str:
    if engine not in ENGINES:
        raise UsageError(f"--engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    return engine


def transformers_engine(folder: Path, settings: ServeSettings) -> Any:
    from gptoss_cli.serve.engines.transformers.engine import TransformersEngine

    return TransformersEngine(folder, device=settings.device, dtype=settings.dtype,
                              max_model_len=settings.max_model_len, mxfp4=settings.mxfp4,
                              decode_step=settings.decode_step)


def batched(engine: Any, settings: ServeSettings, hooks: EngineHooks | None = None) -> Any:
    """``BatchingEngine.wrap(engine)`` for engines that support batching when ``max_concurrency > 1``; else
    ``engine`` itself. The batch loop reports every step to ``hooks.on_step``, KV waits and preemptions to
    ``hooks.on_event``."""
    from gptoss_cli.serve.engines.transformers.batching import BatchingEngine
    from gptoss_cli.serve.options import parse_size

    if settings.max_concurrency <= 1 or not getattr(engine, "supports_batching", False):
        return engine
    budget = parse_size(settings.kv_cache_memory)  # checked with ServeSettings (serve/options.py)
    hooks = hooks or EngineHooks()
    return BatchingEngine.wrap(engine, max_batch=settings.max_concurrency, kv_cache_bytes=budget,
                               on_step=hooks.on_step, on_event=hooks.on_event)


def request_engine(
    settings: ServeSettings,
    hooks: EngineHooks | None = None,
    *,
    model_dir: Path | None = None,
    env: Mapping[str, str] | None = None,
    on_output: Callable[[str], None] | None = None,
) -> tuple[Any, list[str]]:
    """The ``ChatBackend`` for ``settings.engine`` (``vllm`` or ``upstream``) and any warnings to show."""
    hooks = hooks or EngineHooks()
    engine = check_engine(settings.engine)
    if engine == "upstream":
        return _upstream(settings, hooks), []
    if engine == "vllm":
        if model_dir is None:
            raise UsageError("--engine vllm needs MODEL_DIR (the fetched model/ folder)")
        return _vllm(settings, hooks, model_dir, env, on_output)
    raise UsageError("the transformers engine is not a request-level backend")  # pragma: no cover - caller bug


def _upstream(settings: ServeSettings, hooks: EngineHooks) -> Any:
    from gptoss_cli.serve.engines.upstream.backend import UpstreamBackend, UpstreamConfig

    if not settings.upstream_url:
        raise UsageError("--engine upstream needs --upstream-url", hint="e.g. --upstream-url http://vllm:8000/v1")
    config = UpstreamConfig(url=settings.upstream_url, api_key=settings.upstream_api_key,
                            model=settings.upstream_model, read_timeout=float(settings.request_timeout))
    return UpstreamBackend(config, served_model_name=settings.served_model_name, observe=hooks.observe)


def _vllm(settings: ServeSettings, hooks: EngineHooks, model_dir: Path, env: Mapping[str, str] | None,
          on_output: Callable[[str], None] | None) -> tuple[Any, list[str]]:
    from gptoss_cli.serve.engines.vllm.backend import VllmBackend, VllmOptions, preflight

    if settings.upstream_url:
        raise UsageError("--upstream-url is for --engine upstream; --engine vllm starts its own server")
    served = settings.served_model_name
    aliases = [a for a in settings.aliases if a != served]
    options = VllmOptions(
        model_dir=model_dir.resolve(),
        served_model_names=(served, *aliases),
        max_model_len=settings.max_model_len,
        tensor_parallel_size=settings.tensor_parallel_size,
        pipeline_parallel_size=settings.pipeline_parallel_size,
        distributed_executor_backend=settings.distributed_executor_backend,
        dtype=settings.dtype,
        system_start_date=settings.current_date,
        extra_args=settings.vllm_args,
    )
    base = dict(os.environ if env is None else env)  # the child's environment (secrets are removed from it)
    warnings = preflight(options, base)
    backend = VllmBackend(options, env=base, on_output=on_output, default_reasoning_effort=settings.reasoning_effort,
                          read_timeout=float(settings.request_timeout), observe=hooks.observe,
                          on_failure=hooks.on_failure)
    return backend, warnings


__all__ = ["ENGINES", "batched", "check_engine", "request_engine", "transformers_engine"]
