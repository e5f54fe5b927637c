"""``gptoss serve``: the OpenAI-compatible, harmony-aware server over a local model folder (or the demo model)."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Annotated, Any, Iterator, Optional

import typer

from gptoss_cli.cli._complete import offer
from gptoss_cli.cli._errors import boundary, error_info, exit_code_for
from gptoss_cli.cli._options import output_for, settings_for, state
from gptoss_cli.cli._output import Output
from gptoss_cli.cli._progress import byte_progress
from gptoss_cli.config import Settings
from gptoss_cli.errors import CheckFailed, CouldNotRun, GptossError, UsageError
from gptoss_cli.extras import require, serve_modules

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
        autocompletion=offer("gptoss_cli.serve.engines.transformers.engine:DEVICES"),
        help="auto, cpu, cuda or cuda:N. (default: auto)")] = None,
    dtype: Annotated[Optional[str], typer.Option(
        autocompletion=offer("gptoss_cli.serve.options:DTYPES"),
        help="auto, bfloat16, float16 or float32. (default: auto)")] = None,
    max_model_len: Annotated[
        Optional[int], typer.Option(help="Context length limit in tokens. (default: the most that fits, at most "
                                    "the model's)", min=2)
    ] = None,
    mxfp4: Annotated[Optional[str], typer.Option(
        autocompletion=offer("gptoss_cli.serve.options:MXFP4_MODES"),
        help="MXFP4 experts: auto, native (triton kernels), packed (pure torch, 4-bit in memory) or "
             "dequantise. (default: auto)")] = None,
    decode_step: Annotated[Optional[str], typer.Option(
        autocompletion=offer("gptoss_cli.serve.options:DECODE_STEPS"),
        help="Decode steps: fast (a shorter path for the stock gpt-oss model, same results) or transformers (its "
             "forward). (default: fast)")] = None,
    reasoning_effort: Annotated[
        Optional[str], typer.Option(autocompletion=offer("gptoss_cli.serve.options:EFFORTS"),
                                    help="Default reasoning effort: low, medium or high. (default: medium)")
    ] = None,
    current_date: Annotated[
        Optional[str],
        typer.Option(help="Date in the system prompt, YYYY-MM-DD, for reproducible output. (default: today)"),
    ] = None,
    demo: Annotated[
        bool, typer.Option("--demo", help="Serve the tiny demo model shipped with gptoss (offline, no downloads).")
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
        autocompletion=offer("gptoss_cli.serve.options:LOG_FORMATS"),
        help="Access log format: text or json. (default: text)")] = None,
    log_prompts: Annotated[
        Optional[bool], typer.Option("--log-prompts", help="Put prompt and completion text in the access log.")
    ] = None,
    policy: Annotated[
        Optional[Path], typer.Option(help="Policy file (TOML): block/redact input, redact/stop output, glossary; "
                                     "SIGHUP reloads it.", show_default=False)
    ] = None,
    keys_file: Annotated[Optional[Path], typer.Option(
        help="Named API keys (gptoss keys add). (default: <home>/keys.json when it exists)")] = None,
    journal: Annotated[Optional[Path], typer.Option(
        help="Append a tamper-evident journal line per request here (check: gptoss journal verify).")] = None,
    journal_max_bytes: Annotated[Optional[str], typer.Option(
        help="Rotate the journal past this size (FILE.1, FILE.2, ...), e.g. 100MiB. (default: never)")] = None,
    journal_on_error: Annotated[Optional[str], typer.Option(
        autocompletion=offer("gptoss_cli.serve.openai.journaling:ON_ERROR"),
        help="Journal unwritable (disk full): refuse requests (503) or continue unlogged. (default: refuse)")] = None,
    journal_prompts: Annotated[Optional[bool], typer.Option(
        "--journal-prompts", help="Full prompt and completion text in the journal (default: SHA-256 only).")] = None,
    engine_kind: Annotated[
        Optional[str], typer.Option("--engine", autocompletion=offer("gptoss_cli.serve.engines.build:ENGINES"),
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
        Optional[str], typer.Option(autocompletion=offer("gptoss_cli.serve.engines.vllm.backend:EXECUTOR_BACKENDS"),
                                    help="--engine vllm: mp, ray, uni or external_launcher. (default: vLLM's)")
    ] = None,
    vllm_arg: Annotated[
        Optional[list[str]], typer.Option("--vllm-arg", help="--engine vllm: extra `vllm serve` argument "
                                          "(repeatable; --vllm-arg=--flag=value).")
    ] = None,
) -> None:
    """Serve the model over an OpenAI-compatible API (chat, completions, models; harmony-aware)."""
    out = output_for(ctx)
    out.streamed = True  # --json: JSON Lines on stdout (a "ready" event, then the "exit" envelope)
    settings = settings_for(ctx, {
        "serve.host": host, "serve.port": port, "serve.served_model_name": served_model_name,
        "serve.aliases": alias or None, "serve.api_key": api_key, "serve.device": device, "serve.dtype": dtype,
        "serve.mxfp4": mxfp4, "serve.decode_step": decode_step,
        "serve.max_model_len": max_model_len, "serve.reasoning_effort": reasoning_effort,
        "serve.current_date": current_date, "serve.max_concurrency": max_concurrency, "serve.max_queue": max_queue,
        "serve.kv_cache_memory": kv_cache_memory, "serve.request_timeout": request_timeout,
        "serve.drain_timeout": drain_timeout, "serve.cache_url": cache_url, "serve.cache": cache,
        "serve.log_format": log_format, "serve.log_prompts": log_prompts, "serve.engine": engine_kind,
        "serve.policy": policy,
        "serve.keys_file": keys_file, "serve.journal": journal, "serve.journal_max_bytes": journal_max_bytes,
        "serve.journal_on_error": journal_on_error, "serve.journal_prompts": journal_prompts,
        "serve.upstream_url": upstream_url, "serve.upstream_api_key_env": upstream_api_key_env,
        "serve.upstream_model": upstream_model, "serve.tensor_parallel_size": tensor_parallel_size,
        "serve.pipeline_parallel_size": pipeline_parallel_size,
        "serve.distributed_executor_backend": distributed_executor_backend, "serve.vllm_args": vllm_arg or None,
    })
    if settings["serve.log_format"] != "json":
        _start(settings, model_dir, demo=demo, skip_verify=skip_verify, out=out)
        return
    json_out = JsonLogOutput(json_mode=out.json_mode, level=out.level, no_truncate=out.fold, command=out.command)
    json_out.streamed = True
    state(ctx).output = json_out  # the error boundary writes the --json envelope through this one
    with json_out.errors_reported():
        _start(settings, model_dir, demo=demo, skip_verify=skip_verify, out=json_out)


def _start(settings: Settings, model_dir: Optional[Path], *, demo: bool, skip_verify: bool, out: Output) -> None:
    """Check every option and bind the port (fast failures, exit 2/3), then serve."""
    from gptoss_cli.serve.engines.build import check_engine
    from gptoss_cli.serve.options import check_serve_options, normalise_host
    from gptoss_cli.serve.runtime import bind
    from gptoss_cli.serve.settings import host_is_loopback

    kind = check_engine(settings["serve.engine"])
    for warning in check_serve_options(settings, kind):  # every option, before anything slow (exit 2)
        out.warn(warning)
    if demo and model_dir is not None:
        raise UsageError("give either MODEL_DIR or --demo, not both")
    if demo and kind != "transformers":
        raise UsageError("--demo runs the built-in model in process; it cannot be combined with --engine " + kind)
    what = "--demo" if demo else ("" if kind == "transformers" else f"--engine {kind}")
    require("serve", serve_modules(kind), purpose=f"gptoss serve {what}".strip())  # before any work or output
    if kind == "upstream" and model_dir is not None:
        raise UsageError("--engine upstream serves the upstream's model: drop MODEL_DIR")
    folder = _model_folder(model_dir, settings) if not demo and kind != "upstream" else None
    listen = normalise_host(settings["serve.host"])
    if not host_is_loopback(listen) and not settings.get("serve.api_key") and not _keys_file(settings):
        out.warn(f"listening on {listen} (beyond this machine) without an API key: anyone who can "
                 "reach it can use the model; set GPTOSS_API_KEY")
    sock = bind(listen, settings["serve.port"])  # before verify and load: "address in use" fails at once
    try:
        _serve_on(sock, settings, kind, folder, demo=demo, skip_verify=skip_verify, out=out)
    finally:
        sock.close()


def _keys_file(settings: Settings) -> Optional[Path]:
    path = settings.get("serve.keys_file") or settings.home / "keys.json"
    return path if settings.get("serve.keys_file") or path.is_file() else None


class JsonLogOutput(Output):
    """``--log-format json``: the command's own stderr lines (progress, warnings, the ready line, the final error)
    are JSON objects like the access log's, so that every line of the stream parses."""

    def info(self, message: str) -> None:
        self._line("info", message)

    def warn(self, message: str) -> None:
        self._line("warning", message)

    def error(self, message: str) -> None:
        self._line("error", message)

    def _line(self, level: str, message: str, **fields: Any) -> None:
        import sys

        from gptoss_cli.serve.logfmt import json_line

        text = message[len("gptoss: "):] if message.startswith("gptoss: ") else message
        sys.stderr.write(json_line(level, text, **fields) + "\n")
        sys.stderr.flush()

    @contextlib.contextmanager
    def errors_reported(self) -> Iterator[None]:
        try:
            yield
        except (GptossError, KeyboardInterrupt) as exc:
            code = exit_code_for(exc)
            message = exc.one_line() if isinstance(exc, GptossError) else "interrupted"
            self._line("error", message, exit_code=code)
            self.finish(code, error_info(exc))
            raise typer.Exit(code) from None


def _serve_on(sock: Any, settings: Settings, kind: str, folder: Optional[Path], *, demo: bool, skip_verify: bool,
              out: Output) -> None:
    from gptoss_cli.serve.engines.build import batched, request_engine
    from gptoss_cli.serve.runtime import Runtime, base_url, ready_line
    from gptoss_cli.serve.settings import ServeSettings

    overrides: dict[str, Any] = {}
    if demo:
        folder = _demo_model()
        overrides["current_date"] = settings.get("serve.current_date") or _demo_date()
    if folder is not None and not skip_verify:  # the shipped demo model is verified against its lock too
        _verify(folder, settings, out)
    serve_settings = ServeSettings.from_config(settings, **overrides)  # the one settings object from here on
    runtime = Runtime(serve_settings, sock, on_force=_exit_soon)
    if kind == "transformers":
        assert folder is not None
        _check_memory(folder, serve_settings, out)
        engine = batched(_make_engine(folder, serve_settings), serve_settings, runtime.hooks)
    else:
        engine, warnings = request_engine(serve_settings, runtime.hooks, model_dir=folder,
                                          on_output=lambda line: _say(out, line))
        for warning in warnings:
            out.warn(warning)
    url = base_url(serve_settings.host, sock.getsockname()[1])
    key_source = settings.source("serve.api_key")
    out.info(f"gptoss: loading {folder} ..." if kind == "transformers" else f"gptoss: starting {engine.description}")
    runtime.run(engine, on_ready=lambda: _ready(out, ready_line(serve_settings, url, engine.description, key_source), {
        "model": serve_settings.served_model_name, "aliases": list(serve_settings.aliases),
        "engine": engine.description, "url": f"{url}/v1", "api_key_required": bool(serve_settings.api_key or serve_settings.keys_file),
        **_mxfp4_field(engine)}))


def _mxfp4_field(engine: Any) -> dict[str, Any]:
    """``{"mxfp4": path}`` for an engine that loaded MXFP4 experts (the path they really took), else nothing."""
    inner = getattr(engine, "inner", None) or engine
    path = getattr(inner, "mxfp4", None)
    return {"mxfp4": path} if path else {}


def _exit_soon(grace: float = 5.0) -> None:
    """After a second signal: exit 130 within ``grace`` seconds even if a worker thread (a generation that cannot
    be interrupted mid-step) would keep the interpreter alive."""
    import os
    import sys
    import threading

    def hard_exit() -> None:
        sys.stderr.flush()
        os._exit(130)

    timer = threading.Timer(grace, hard_exit)
    timer.daemon = True
    timer.start()


def _say(out: Output, line: str) -> None:
    if isinstance(out, JsonLogOutput):
        out.info(line)
    else:
        out.err.print(line, markup=False, highlight=False, soft_wrap=True)


def _ready(out: Output, line: str, event: dict[str, Any]) -> None:
    """The ready line on stderr; with --json also one ``{"event": "ready", ...}`` line on stdout (JSON Lines)."""
    _say(out, line)
    if out.json_mode:
        out.event("ready", **event)


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
    with byte_progress(out, "verifying") as progress:
        result = verify_lock(lock, model_dir=folder, jobs=int(settings.get("verify.jobs", 0) or 0), progress=progress)
    if not result.ok:
        raise CheckFailed(f"the model does not match {lock}: {result.summary()}",
                          hint="run `gptoss verify` for details, or --skip-verify to serve anyway")


def _demo_model() -> Path:
    from gptoss_cli.demo import demo_model_dir

    return demo_model_dir()


def _demo_date() -> str:
    from gptoss_cli.demo import DEMO_CURRENT_DATE

    return DEMO_CURRENT_DATE


def _check_memory(folder: Path, settings: Any, out: Output) -> None:
    """Refuse (exit 3, with the numbers) a model that cannot fit, instead of being OOM-killed mid-load; say which
    MXFP4 path and context the engine will take."""
    from gptoss_cli.config import hf_hub_cache, local_kernels
    from gptoss_cli.serve.engines.transformers.engine import check_weights, resolve_device
    from gptoss_cli.serve.engines.transformers.memory import gib
    from gptoss_cli.serve.engines.transformers.plan import plan_load

    check_weights(folder)
    device = resolve_device(settings.device)
    plan = plan_load(folder, device, settings.dtype, max_model_len=settings.max_model_len, mxfp4=settings.mxfp4,
                     hub_cache=hf_hub_cache(), local_kernels=local_kernels())
    est = plan.estimate
    free = f", {gib(est.available_bytes)} available" if est.available_bytes is not None else ""
    out.info(f"gptoss: memory: about {gib(est.needed_bytes)} on {device} ({est.detail}){free}")
    if plan.native is not None and plan.mxfp4 != "native":
        out.info(f"gptoss: MXFP4 experts: {plan.mxfp4} (native kernels not used: {plan.native.reason})")
    if settings.max_model_len is None:
        out.info(f"gptoss: context {plan.max_model_len} tokens ({plan.context_reason})")


def _make_engine(folder: Path, settings: Any) -> Any:
    from gptoss_cli.serve.engines.build import transformers_engine

    return transformers_engine(folder, settings)
