"""Build the request-level backend for ``--engine vllm|upstream`` from the resolved configuration.

``build_backend(settings, engine, model_dir=…)`` returns ``(backend, warnings)``; the CLI prints the warnings and
hands the backend to ``create_app`` in place of a token-level engine. Bad combinations are ``UsageError`` (exit 2), a
missing ``vllm`` executable ``CouldNotRun`` (exit 3).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping

from gptoss_cli.config import Secret, Settings, read_env
from gptoss_cli.errors import UsageError

ENGINES = ("transformers", "vllm", "upstream")
# vLLM batches hundreds of sequences itself: the front's own admission limits only guard against floods.
REQUEST_LEVEL_CONCURRENCY = 256
REQUEST_LEVEL_QUEUE = 1024


def check_engine(engine: str) -> str:
    if engine not in ENGINES:
        raise UsageError(f"--engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    return engine


def build_backend(
    settings: Settings,
    engine: str,
    *,
    model_dir: Path | None = None,
    env: Mapping[str, str] | None = None,
    on_output: Callable[[str], None] | None = None,
) -> tuple[Any, list[str]]:
    """The ``ChatBackend`` for ``engine`` (``vllm`` or ``upstream``) and any warnings to show."""
    check_engine(engine)
    if engine == "upstream":
        return _upstream(settings, env), []
    if engine == "vllm":
        if model_dir is None:
            raise UsageError("--engine vllm needs MODEL_DIR (the fetched model/ folder)")
        return _vllm(settings, model_dir, env, on_output)
    raise UsageError("the transformers engine is not a request-level backend")  # pragma: no cover - caller bug


def _upstream(settings: Settings, env: Mapping[str, str] | None) -> Any:
    from gptoss_cli.serve.engines.upstream.backend import UpstreamBackend, UpstreamConfig

    url = settings.get("serve.upstream_url")
    if not url:
        raise UsageError("--engine upstream needs --upstream-url", hint="e.g. --upstream-url http://vllm:8000/v1")
    config = UpstreamConfig(url=url, api_key=_named_key(settings, env), model=settings.get("serve.upstream_model"),
                            read_timeout=float(settings.get("serve.request_timeout", 600.0)))
    return UpstreamBackend(config, served_model_name=settings["serve.served_model_name"])


def _named_key(settings: Settings, env: Mapping[str, str] | None) -> Secret | None:
    name = settings.get("serve.upstream_api_key_env")
    if not name:
        return None
    value = read_env(name, env)
    if value is None:
        raise UsageError(f"--upstream-api-key-env names {name}, which is not set",
                         hint=f"export {name}=... or drop the option for an upstream without a key")
    return Secret(value)


def _vllm(settings: Settings, model_dir: Path, env: Mapping[str, str] | None,
          on_output: Callable[[str], None] | None) -> tuple[Any, list[str]]:
    import os

    from gptoss_cli.serve.engines.vllm.backend import VllmBackend, VllmOptions, preflight

    if settings.get("serve.upstream_url"):
        raise UsageError("--upstream-url is for --engine upstream; --engine vllm starts its own server")
    served = settings["serve.served_model_name"]
    aliases = [a for a in settings.get("serve.aliases", []) if a != served]
    options = VllmOptions(
        model_dir=model_dir.resolve(),
        served_model_names=(served, *aliases),
        max_model_len=settings.get("serve.max_model_len"),
        tensor_parallel_size=int(settings["serve.tensor_parallel_size"]),
        pipeline_parallel_size=int(settings["serve.pipeline_parallel_size"]),
        distributed_executor_backend=settings.get("serve.distributed_executor_backend"),
        dtype=settings["serve.dtype"],
        system_start_date=settings.get("serve.current_date"),
        extra_args=tuple(settings.get("serve.vllm_args", [])),
    )
    base = dict(os.environ if env is None else env)
    warnings = preflight(options, base)
    backend = VllmBackend(options, env=base, on_output=on_output,
                          default_reasoning_effort=settings.get("serve.reasoning_effort"),
                          read_timeout=float(settings.get("serve.request_timeout", 600.0)))
    return backend, warnings


__all__ = ["ENGINES", "REQUEST_LEVEL_CONCURRENCY", "REQUEST_LEVEL_QUEUE", "build_backend", "check_engine"]
