"""``--engine vllm``: run ``vllm serve MODEL_DIR`` as a supervised child on a private Unix socket.

The gptoss front stays in front of it (auth, error envelope, backpressure, metrics, access log, Dify-compatible
fields) and talks to the child through ``UpstreamBackend`` (``upstream.py``). This module builds the exact command
line and environment (``vllm_argv``, ``vllm_env``) and supervises the child (``ChildSupervisor``): start, wait for
``/health`` with a bounded timeout, restart a bounded number of times when it dies, give up cleanly, and stop it on
shutdown (SIGTERM to its process group, SIGKILL after a grace period).

Flag names follow vLLM's gpt-oss recipe (reference/harmony-and-gptoss.md §3.2): ``--reasoning-parser openai_gptoss``,
``--tool-call-parser openai --enable-auto-tool-choice``; ``VLLM_SYSTEM_START_DATE`` pins the date in the harmony
system message (§4.3).

The child listens on no TCP port: ``vllm serve --uds PATH`` (vLLM PR #18097) binds a Unix socket inside a folder
only this user can enter (``mkdtemp``: 0700; the socket itself is made 0600). vLLM's ``--api-key`` guards only
``/v1/*`` (it serves ``POST /invocations`` and other routes without it), so a loopback port would let any local
user use the model around the front's key; the socket's file permissions stop them before HTTP. The child also
gets a random API key (``VLLM_API_KEY``, in its environment, never on its command line) as a second lock. A vLLM
too old for ``--uds`` fails at start with an error saying so — never a fallback to TCP.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from gptoss_cli.config import FIELDS, Secret
from gptoss_cli.errors import CouldNotRun, UsageError
from gptoss_cli.serve.engines.vllm.supervisor import ChildFailed, ChildSupervisor
from gptoss_cli.serve.engines.upstream.backend import UpstreamBackend, UpstreamConfig
from gptoss_cli.serve.options import DTYPES

EXECUTOR_BACKENDS = ("mp", "ray", "uni", "external_launcher")
REASONING_PARSER = "openai_gptoss"
TOOL_CALL_PARSER = "openai"
OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "VLLM_NO_USAGE_STATS": "1",  # vLLM reports usage statistics home unless told not to
    "DO_NOT_TRACK": "1",
}
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
SOCKET_NAME = "vllm.sock"
MAX_SOCKET_PATH = 100  # sun_path holds 108 bytes on Linux, 104 on macOS


@dataclass(frozen=True)
class VllmOptions:
    """What ``vllm serve`` is started with (mapped from gptoss's own options)."""

    model_dir: Path
    served_model_names: tuple[str, ...] = ("gpt-oss-20b",)
    socket_path: Path | None = None  # None: a fresh private folder when the child starts
    max_model_len: int | None = None
    tensor_parallel_size: int = 1
    pipeline_parallel_size: int = 1
    distributed_executor_backend: str | None = None
    dtype: str = "auto"
    system_start_date: str | None = None
    gpu_memory_utilization: float | None = None
    executable: str = "vllm"
    extra_args: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if not self.served_model_names or not all(self.served_model_names):
            raise UsageError("vLLM needs at least one non-empty served model name")
        for name in ("tensor_parallel_size", "pipeline_parallel_size"):
            if getattr(self, name) < 1:
                raise UsageError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        backend = self.distributed_executor_backend
        if backend is not None and backend not in EXECUTOR_BACKENDS:
            raise UsageError(
                f"--distributed-executor-backend must be one of {', '.join(EXECUTOR_BACKENDS)}, got {backend!r}"
            )
        if self.dtype not in DTYPES:
            raise UsageError(f"vLLM dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        if self.system_start_date is not None and not _DATE.match(self.system_start_date):
            raise UsageError(f"the pinned date must be YYYY-MM-DD, got {self.system_start_date!r}")
        if self.max_model_len is not None and self.max_model_len < 2:
            raise UsageError(f"--max-model-len must be at least 2, got {self.max_model_len}")
        if self.gpu_memory_utilization is not None and not 0 < self.gpu_memory_utilization <= 1:
            raise UsageError("GPU memory utilisation must be in (0, 1]")
        if self.socket_path is not None and len(str(self.socket_path)) > MAX_SOCKET_PATH:
            raise UsageError(f"the vLLM socket path is longer than {MAX_SOCKET_PATH} characters: {self.socket_path}")

    @property
    def world_size(self) -> int:
        return self.tensor_parallel_size * self.pipeline_parallel_size


BASE_URL = "http://localhost"  # the host part is only the Host header: requests go through the socket


def vllm_argv(o: VllmOptions) -> list[str]:
    """The exact ``vllm serve`` command line. Never ``--trust-remote-code``; safetensors weights only."""
    if o.socket_path is None:
        raise UsageError("the vLLM socket path is chosen when the child starts")  # pragma: no cover - caller bug
    argv = [o.executable, "serve", str(o.model_dir),
            "--served-model-name", *o.served_model_names,
            "--uds", str(o.socket_path),
            "--dtype", o.dtype,
            "--load-format", "safetensors",
            "--tensor-parallel-size", str(o.tensor_parallel_size),
            "--pipeline-parallel-size", str(o.pipeline_parallel_size)]
    if o.distributed_executor_backend:
        argv += ["--distributed-executor-backend", o.distributed_executor_backend]
    if o.max_model_len:
        argv += ["--max-model-len", str(o.max_model_len)]
    if o.gpu_memory_utilization:
        argv += ["--gpu-memory-utilization", f"{o.gpu_memory_utilization:g}"]
    argv += ["--reasoning-parser", REASONING_PARSER,
             "--tool-call-parser", TOOL_CALL_PARSER, "--enable-auto-tool-choice",
             "--disable-uvicorn-access-log"]
    return argv + list(o.extra_args)


def _secret_env_names() -> set[str]:
    return {name for spec in FIELDS if spec.secret for name in spec.env_names}


def vllm_env(o: VllmOptions, *, api_key: str | None = None, base: Mapping[str, str] | None = None,
             drop: Sequence[str] = ()) -> dict[str, str]:
    """The child's environment: ours minus our secrets (and ``drop``), plus the offline and pinning variables."""
    env = dict(os.environ if base is None else base)
    for name in _secret_env_names() | set(drop):
        env.pop(name, None)
    env.update(OFFLINE_ENV)
    env["TIKTOKEN_ENCODINGS_BASE"] = str(tiktoken_base(env))
    if o.system_start_date:
        env["VLLM_SYSTEM_START_DATE"] = o.system_start_date
    if api_key:
        env["VLLM_API_KEY"] = api_key
    else:
        env.pop("VLLM_API_KEY", None)
    return env


def tiktoken_base(env: Mapping[str, str]) -> Path:
    """The folder vLLM's harmony tokenizer reads ``o200k_base.tiktoken`` from (offline: it must not download it,
    vllm#22525): ``TIKTOKEN_ENCODINGS_BASE`` when that folder holds the file (SHA-256 checked), else the copy
    shipped in ``gptoss_cli/vocab``."""
    from gptoss_cli.vocab import check_encodings_base, encodings_base

    base = env.get("TIKTOKEN_ENCODINGS_BASE")
    if base and (Path(base) / "o200k_base.tiktoken").is_file():
        return check_encodings_base(Path(base))
    return encodings_base()


def preflight(o: VllmOptions, env: Mapping[str, str]) -> list[str]:
    """Fail fast on what would make the child fail slowly; return warnings for what may still work."""
    if shutil.which(o.executable, path=env.get("PATH")) is None:
        raise CouldNotRun(f"{o.executable!r} not found on PATH",
                          hint="install vLLM in this environment (pip install vllm, on a CUDA machine)")
    if not (o.model_dir / "config.json").is_file():
        raise UsageError(f"{o.model_dir} has no config.json", hint="point MODEL_DIR at the fetched model/ folder")
    warnings = []
    base = env.get("TIKTOKEN_ENCODINGS_BASE")
    if base and not (Path(base) / "o200k_base.tiktoken").is_file():
        warnings.append(f"TIKTOKEN_ENCODINGS_BASE={base} holds no o200k_base.tiktoken: vLLM gets the copy shipped "
                        "with gptoss instead")
    tiktoken_base(env)  # the shipped copy is checked (SHA-256) before the child starts
    if o.pipeline_parallel_size > 1 and o.distributed_executor_backend not in ("ray", "mp"):
        warnings.append("pipeline parallelism across nodes needs --distributed-executor-backend ray")
    return warnings


def private_socket_path() -> Path:
    """``<new 0700 folder>/vllm.sock``: only this user (and root) can reach a socket in there."""
    folder = Path(tempfile.mkdtemp(prefix="gptoss-vllm-"))
    if len(str(folder / SOCKET_NAME)) > MAX_SOCKET_PATH:  # a long TMPDIR: fall back to /tmp
        folder.rmdir()
        folder = Path(tempfile.mkdtemp(prefix="gptoss-vllm-", dir="/tmp"))
    return folder / SOCKET_NAME


def _no_uds(failure: str) -> bool:
    return "unrecognized arguments" in failure and "--uds" in failure


class VllmBackend:
    """``ChatBackend``: a supervised ``vllm serve`` child plus an ``UpstreamBackend`` pointed at its socket."""

    def __init__(
        self,
        options: VllmOptions,
        *,
        env: Mapping[str, str] | None = None,
        start_timeout: float = 1800.0,
        max_restarts: int = 2,
        stop_grace: float = 30.0,
        on_failure: Callable[[str], None] | None = None,
        on_output: Callable[[str], None] | None = None,
        observe: Callable[[Any], None] | None = None,
        default_reasoning_effort: str | None = None,
        read_timeout: float = 600.0,
    ) -> None:
        self.options = options
        self.max_model_len = options.max_model_len
        self._key = secrets.token_urlsafe(24)
        self._observe = observe
        self._effort = default_reasoning_effort
        self._read_timeout = read_timeout
        self._own_folder: Path | None = None  # the private folder we made (removed on close)
        self.supervisor = ChildSupervisor(
            argv=[], env=vllm_env(options, api_key=self._key, base=env), health_url=BASE_URL + "/health",
            start_timeout=start_timeout, max_restarts=max_restarts, stop_grace=stop_grace,
            on_failure=on_failure, on_output=on_output, before_restart=self._before_restart,
            on_healthy=self._protect_socket, name="vllm",
        )
        self.upstream: UpstreamBackend | None = None
        self.description = f"vLLM child (tp={options.tensor_parallel_size}, pp={options.pipeline_parallel_size})"
        self.device = "cuda"  # vLLM's GPUs: NVML figures in the front's /metrics where a GPU is visible
        if options.socket_path is not None:
            self._use_socket(options.socket_path)

    def _use_socket(self, path: Path) -> None:
        """Point the child's command line, its health probe and the proxy at the Unix socket ``path``."""
        o = self.options = replace(self.options, socket_path=path)
        self.supervisor.argv = vllm_argv(o)
        self.supervisor.uds = str(path)
        self.description = (f"vLLM child on unix:{path} (tp={o.tensor_parallel_size}, "
                            f"pp={o.pipeline_parallel_size})")
        self.upstream = UpstreamBackend(
            UpstreamConfig(url=BASE_URL + "/v1", uds=str(path), api_key=Secret(self._key),
                           model=o.served_model_names[0], default_reasoning_effort=self._effort,
                           read_timeout=self._read_timeout),
            served_model_name=o.served_model_names[0], observe=self._observe, description=self.description,
        )

    async def start(self) -> None:
        if self.upstream is None:  # a private folder of our own, made now
            path = private_socket_path()
            self._own_folder = path.parent
            self._use_socket(path)
        self._remove_stale_socket()
        try:
            await self.supervisor.start()
        except ChildFailed as exc:
            if _no_uds(str(exc)):
                raise CouldNotRun("this vLLM has no --uds option: gptoss runs it on a private Unix socket",
                                  hint="install a newer vLLM (one whose `vllm serve --help` lists --uds)") from None
            raise CouldNotRun(str(exc), hint="see the vLLM output above") from None
        assert self.upstream is not None
        await self.upstream.start()
        if self.upstream.max_model_len:
            self.max_model_len = self.upstream.max_model_len

    async def ready(self) -> bool:
        return self.supervisor.healthy and await self.supervisor.probe()

    async def complete(self, kind: str, body: dict[str, Any], model: str) -> dict[str, Any]:
        return await self._proxy().complete(kind, body, model)

    async def open_stream(self, kind: str, body: dict[str, Any], model: str) -> Any:
        return await self._proxy().open_stream(kind, body, model)

    async def _before_restart(self) -> None:
        if self.upstream is not None:
            await self.upstream.reset_connections()
        self._remove_stale_socket()

    def _remove_stale_socket(self) -> None:
        """A socket file left by a dead child would make the next one fail to bind ("Address already in use")."""
        path = self.options.socket_path
        if path is not None and path.is_socket():
            path.unlink()

    def _protect_socket(self) -> None:
        """0600 on the socket the child made (the 0700 folder already keeps other users out)."""
        path = self.options.socket_path
        if path is not None and path.is_socket():
            os.chmod(path, 0o600)

    def _proxy(self) -> UpstreamBackend:
        if self.upstream is None:
            from gptoss_cli.serve.errors import NotReady

            raise NotReady("The vLLM server is still starting; retry shortly.")
        return self.upstream

    async def close(self) -> None:
        try:
            if self.upstream is not None:
                await self.upstream.close()
        finally:
            await self.supervisor.stop()
            self._remove_stale_socket()
            if self._own_folder is not None:
                shutil.rmtree(self._own_folder, ignore_errors=True)


__all__ = [
    "DTYPES",
    "EXECUTOR_BACKENDS",
    "OFFLINE_ENV",
    "VllmBackend",
    "VllmOptions",
    "preflight",
    "tiktoken_base",
    "private_socket_path",
    "vllm_argv",
    "vllm_env",
]
