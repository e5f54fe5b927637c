"""``gptoss serve``: the OpenAI-compatible, harmony-aware server over a local model folder (or the demo model)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from gptoss_cli.cli._complete import offer
from gptoss_cli.cli._errors import boundary
from gptoss_cli.cli._options import output_for, settings_for
from gptoss_cli.cli._output import Output
from gptoss_cli.config import Settings
from gptoss_cli.errors import CheckFailed, CouldNotRun, UsageError

ModelDirArg = Annotated[
    Optional[Path],
    typer.Argument(help="Model folder (config.json, tokenizer, *.safetensors). (default: <fetch.dest>/model)",
                   show_default=False),
]


@boundary
def serve(
    ctx: typer.Context,
    model_dir: ModelDirArg = None,
    host: Annotated[Optional[str], typer.Option(help="Address to listen on. (default: 127.0.0.1)")] = None,
    port: Annotated[Optional[int], typer.Option(help="Port to listen on (0: any free port). (default: 8000)")] = None,
    served_model_name: Annotated[
        Optional[str], typer.Option(help="Model id clients use and /v1/models reports. (default: gpt-oss-20b)")
    ] = None,
    alias: Annotated[
        Optional[list[str]], typer.Option("--alias", help="Another accepted model name (repeatable).")
    ] = None,
    api_key: Annotated[
        Optional[str],
        typer.Option(help="Require this Bearer key on /v1/* (prefer the GPTOSS_API_KEY variable).", show_default=False),
    ] = None,
    device: Annotated[Optional[str], typer.Option(
        autocompletion=offer("gptoss_cli.serve.transformers_engine:DEVICES"),
        help="auto, cpu, cuda or cuda:N. (default: auto)")] = None,
    dtype: Annotated[Optional[str], typer.Option(
        autocompletion=offer("gptoss_cli.serve.transformers_engine:DTYPES"),
        help="auto, bfloat16, float16 or float32. (default: auto)")] = None,
    max_model_len: Annotated[
        Optional[int], typer.Option(help="Context length limit in tokens. (default: the model's)", min=2)
    ] = None,
    reasoning_effort: Annotated[
        Optional[str], typer.Option(autocompletion=offer("gptoss_cli.serve.settings:EFFORTS"),
                                    help="Default reasoning effort: low, medium or high. (default: medium)")
    ] = None,
    current_date: Annotated[
        Optional[str],
        typer.Option(help="Date in the system prompt, YYYY-MM-DD, for reproducible output. (default: today)"),
    ] = None,
    demo: Annotated[
        bool, typer.Option("--demo", help="Serve the tiny built-in demo model (built once, offline).")
    ] = False,
    skip_verify: Annotated[
        bool, typer.Option("--skip-verify", help="Do not re-hash the model against gptoss.lock.json first.")
    ] = False,
    max_concurrency: Annotated[
        Optional[int], typer.Option(help="Requests generating at once (batch size). (default: 4)")
    ] = None,
    max_queue: Annotated[
        Optional[int], typer.Option(help="Requests waiting for a slot before 429. (default: 32)")
    ] = None,
    kv_cache_memory: Annotated[
        Optional[str], typer.Option(help="KV-cache budget of the batch, e.g. 512MiB, 8GiB. (default: 1GiB)")
    ] = None,
    request_timeout: Annotated[
        Optional[float], typer.Option(help="Seconds per request, queue included (504). (default: 600)")
    ] = None,
    drain_timeout: Annotated[
        Optional[float], typer.Option(help="Seconds in-flight requests get on shutdown. (default: 30)")
    ] = None,
    cache_url: Annotated[
        Optional[str], typer.Option(help="redis://... shared response cache. (default: in memory)")
    ] = None,
    cache: Annotated[
        Optional[bool], typer.Option("--cache/--no-cache", help="Cache deterministic responses. (default: on)")
    ] = None,
    log_format: Annotated[Optional[str], typer.Option(
        autocompletion=offer("gptoss_cli.serve.accesslog:LOG_FORMATS"),
        help="Access log format: text or json. (default: text)")] = None,
    log_prompts: Annotated[
        Optional[bool], typer.Option("--log-prompts", help="Put prompt and completion text in the access log.")
    ] = None,
    engine_kind: Annotated[
        Optional[str], typer.Option("--engine", autocompletion=offer("gptoss_cli.serve.backends:ENGINES"),
                                    help="transformers (in process), vllm (supervised child) or "
                                    "upstream (a server you run). (default: transformers)")
    ] = None,
    upstream_url: Annotated[
        Optional[str], typer.Option(help="--engine upstream: base URL of an OpenAI-compatible server (…/v1).")
    ] = None,
    upstream_api_key_env: Annotated[
        Optional[str], typer.Option(help="--engine upstream: name of the variable holding its API key.")
    ] = None,
    upstream_model: Annotated[
        Optional[str], typer.Option(help="--engine upstream: model name to send (default: the served name).")
    ] = None,
    tensor_parallel_size: Annotated[
        Optional[int], typer.Option(min=1, help="--engine vllm: GPUs per model replica. (default: 1)")
    ] = None,
    pipeline_parallel_size: Annotated[
        Optional[int], typer.Option(min=1, help="--engine vllm: pipeline stages, e.g. one per node. (default: 1)")
    ] = None,
    distributed_executor_backend: Annotated[
        Optional[str], typer.Option(autocompletion=offer("gptoss_cli.serve.vllm:EXECUTOR_BACKENDS"),
                                    help="--engine vllm: mp, ray, uni or external_launcher. (default: vLLM's)")
    ] = None,
    vllm_arg: Annotated[
        Optional[list[str]], typer.Option("--vllm-arg", help="--engine vllm: extra `vllm serve` argument "
                                          "(repeatable; --vllm-arg=--flag=value).")
    ] = None,
) -> None:
    """Serve the model over an OpenAI-compatible API (chat, completions, models; harmony-aware)."""
    from gptoss_cli.serve.backends import REQUEST_LEVEL_CONCURRENCY, REQUEST_LEVEL_QUEUE, build_backend, check_engine
    from gptoss_cli.serve.layers import batching_engine, install
    from gptoss_cli.serve.runner import base_url, bind, ready_line, serve_app
    from gptoss_cli.serve.settings import ServeSettings

    out = output_for(ctx)
    settings = settings_for(ctx, {
        "serve.host": host, "serve.port": port, "serve.served_model_name": served_model_name,
        "serve.aliases": alias or None, "serve.api_key": api_key, "serve.device": device, "serve.dtype": dtype,
        "serve.max_model_len": max_model_len, "serve.reasoning_effort": reasoning_effort,
        "serve.current_date": current_date, "serve.max_concurrency": max_concurrency, "serve.max_queue": max_queue,
        "serve.kv_cache_memory": kv_cache_memory, "serve.request_timeout": request_timeout,
        "serve.drain_timeout": drain_timeout, "serve.cache_url": cache_url, "serve.cache": cache,
        "serve.log_format": log_format, "serve.log_prompts": log_prompts, "serve.engine": engine_kind,
        "serve.upstream_url": upstream_url, "serve.upstream_api_key_env": upstream_api_key_env,
        "serve.upstream_model": upstream_model, "serve.tensor_parallel_size": tensor_parallel_size,
        "serve.pipeline_parallel_size": pipeline_parallel_size,
        "serve.distributed_executor_backend": distributed_executor_backend, "serve.vllm_args": vllm_arg or None,
    })
    kind = check_engine(settings["serve.engine"])
    if demo and model_dir is not None:
        raise UsageError("give either MODEL_DIR or --demo, not both")
    if demo and kind != "transformers":
        raise UsageError("--demo runs the built-in model in process; it cannot be combined with --engine " + kind)
    overrides: dict[str, Any] = {}
    folder: Optional[Path] = None
    if demo:
        folder = _demo_model(settings, out)
        overrides["current_date"] = settings.get("serve.current_date") or _demo_date()
    elif kind == "upstream":
        if model_dir is not None:
            raise UsageError("--engine upstream serves the upstream's model: drop MODEL_DIR")
    else:
        folder = _model_folder(model_dir, settings)
        if not skip_verify:
            _verify(folder, settings, out)
    if kind != "transformers":  # the backend batches itself: the front only guards against floods
        for key, wide in (("max_concurrency", REQUEST_LEVEL_CONCURRENCY), ("max_queue", REQUEST_LEVEL_QUEUE)):
            if settings.source(f"serve.{key}") == "default":
                overrides[key] = wide
    serve_settings = ServeSettings.from_config(settings, **overrides)
    if kind == "transformers":
        assert folder is not None
        _check_memory(folder, settings, out)
        engine = batching_engine(_make_engine(folder, settings), serve_settings)
    else:
        engine, warnings = build_backend(settings, kind, model_dir=folder, on_output=lambda line: _say(out, line))
        for warning in warnings:
            out.warn(warning)
    if not serve_settings.is_loopback and not serve_settings.api_key:
        out.warn(f"listening on {serve_settings.host} (beyond this machine) without an API key: anyone who can "
                 "reach it can use the model; set GPTOSS_API_KEY")
    sock = bind(serve_settings.host, serve_settings.port)
    url = base_url(serve_settings.host, sock.getsockname()[1])
    out.info(f"gptoss: loading {folder} ..." if kind == "transformers" else f"gptoss: starting {engine.description}")
    serve_app(serve_settings, engine, sock, configure=install,
              on_ready=lambda: _say(out, ready_line(serve_settings, url, engine.description)))


def _say(out: Output, line: str) -> None:
    out.err.print(line, markup=False, highlight=False, soft_wrap=True)


def _model_folder(model_dir: Optional[Path], settings: Settings) -> Path:
    if model_dir is not None:
        folder = model_dir.expanduser()
        if not folder.is_dir():
            raise UsageError(f"model folder {folder} does not exist")
        return folder
    folder = Path(settings["fetch.dest"]) / "model"
    if not folder.is_dir():
        raise CouldNotRun(f"no model at {folder}",
                          hint="run `gptoss fetch` first, pass MODEL_DIR, or try `gptoss serve --demo`")
    return folder


def _verify(folder: Path, settings: Settings, out: Output) -> None:
    """Re-hash the folder against ``../gptoss.lock.json`` when there is one; a mismatch refuses to start (exit 1)."""
    lock = folder.parent / "gptoss.lock.json"
    if not lock.is_file():
        return
    try:
        from gptoss_cli.verify import verify_lock
    except ImportError:  # pragma: no cover - the verify module ships with the package
        out.warn("cannot verify the model (gptoss_cli.verify unavailable); starting without verification")
        return
    out.info(f"gptoss: verifying {folder} against {lock} ...")
    result = verify_lock(lock, model_dir=folder, jobs=int(settings.get("verify.jobs", 0) or 0))
    if not result.ok:
        raise CheckFailed(f"the model does not match {lock}: {result.summary()}",
                          hint="run `gptoss verify` for details, or --skip-verify to serve anyway")


def _demo_model(settings: Settings, out: Output) -> Path:
    from gptoss_cli.serve.demo import ensure_demo_model

    return Path(ensure_demo_model(settings.home, progress=lambda msg: out.info(f"gptoss: {msg}")))


def _demo_date() -> str:
    from gptoss_cli.serve.demo import DEMO_CURRENT_DATE

    return DEMO_CURRENT_DATE


def _check_memory(folder: Path, settings: Settings, out: Output) -> None:
    """Refuse (exit 3, with the numbers) a model that cannot fit, instead of being OOM-killed mid-load."""
    from gptoss_cli.serve.memory import check_memory, gib
    from gptoss_cli.serve.transformers_engine import (
        check_weights,
        native_mxfp4_available,
        resolve_device,
        resolve_dtype,
    )

    check_weights(folder)
    device = resolve_device(settings["serve.device"])
    dtype = resolve_dtype(settings["serve.dtype"], device)
    est = check_memory(folder, device, dtype, max_model_len=settings.get("serve.max_model_len"),
                       mxfp4_native=native_mxfp4_available(device))
    free = f", {gib(est.available_bytes)} available" if est.available_bytes is not None else ""
    out.info(f"gptoss: memory: about {gib(est.needed_bytes)} on {device} ({est.detail}){free}")


def _make_engine(folder: Path, settings: Settings) -> Any:
    from gptoss_cli.serve.transformers_engine import TransformersEngine

    return TransformersEngine(folder, device=settings["serve.device"], dtype=settings["serve.dtype"],
                              max_model_len=settings.get("serve.max_model_len"))
