"""Building the request-level backend from the configuration (flags > env > file > default)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from gptoss_cli.config import load_settings
from gptoss_cli.errors import CouldNotRun, UsageError
from gptoss_cli.serve.engines.build import check_engine, request_engine
from gptoss_cli.serve.engines.upstream.backend import UpstreamBackend
from gptoss_cli.serve.engines.vllm.backend import VllmBackend
from gptoss_cli.serve.settings import ServeSettings


def settings(flags: dict, env: dict | None = None):  # noqa: ANN201
    return load_settings(flags, env=env or {}, cwd=Path("/nonexistent"))


def build_backend(s, engine: str, *, env: dict | None = None, model_dir: Path | None = None):  # noqa: ANN201
    """The configuration → the one ServeSettings → the engine, as ``gptoss serve`` does it."""
    return request_engine(ServeSettings.from_config(s, env=env, engine=engine), model_dir=model_dir, env=env)


def close(backend) -> None:  # noqa: ANN001
    asyncio.run(backend.close())


def test_engine_names() -> None:
    assert check_engine("vllm") == "vllm"
    with pytest.raises(UsageError, match="transformers, vllm, upstream"):
        check_engine("tgi")


def test_upstream_from_flags_and_named_key() -> None:
    s = settings({"serve.upstream_url": "http://up:8000", "serve.upstream_api_key_env": "UP_KEY",
                  "serve.upstream_model": "gpt-oss:20b"})
    backend, warnings = build_backend(s, "upstream", env={"UP_KEY": "sk-up"})
    assert isinstance(backend, UpstreamBackend) and warnings == []
    assert backend.config.url == "http://up:8000/v1" and backend.upstream_model == "gpt-oss:20b"
    assert backend.config.api_key.reveal() == "sk-up" and "sk-up" not in repr(backend.config)
    close(backend)


def test_upstream_from_environment() -> None:
    env = {"GPTOSS_SERVE_UPSTREAM_URL": "https://kserve.internal/openai/v1", "GPTOSS_SERVE_ENGINE": "upstream"}
    s = settings({}, env)
    assert s["serve.engine"] == "upstream"
    backend, _ = build_backend(s, s["serve.engine"], env=env)
    assert backend.config.url == "https://kserve.internal/openai/v1" and backend.config.api_key is None
    close(backend)


def test_upstream_usage_errors() -> None:
    with pytest.raises(UsageError, match="needs --upstream-url"):
        build_backend(settings({}), "upstream")
    s = settings({"serve.upstream_url": "http://up/v1", "serve.upstream_api_key_env": "MISSING"})
    with pytest.raises(UsageError, match="MISSING, which is not set"):
        build_backend(s, "upstream", env={})


def test_vllm_backend_options(tmp_path: Path) -> None:
    exe = tmp_path / "vllm"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    (tmp_path / "config.json").write_text("{}")
    s = settings({"serve.tensor_parallel_size": 4, "serve.pipeline_parallel_size": 2,
                  "serve.distributed_executor_backend": "ray", "serve.aliases": ["gpt-oss"],
                  "serve.current_date": "2026-03-04", "serve.vllm_args": ["--max-num-seqs", "64"],
                  "serve.max_model_len": 16384})
    env = {"PATH": str(tmp_path)}
    backend, warnings = build_backend(s, "vllm", model_dir=tmp_path, env=env)
    assert isinstance(backend, VllmBackend)
    assert backend.supervisor.argv == [] and backend.options.socket_path is None  # a private socket, made at start
    backend._use_socket(tmp_path / "vllm.sock")
    argv = backend.supervisor.argv
    assert argv[:3] == ["vllm", "serve", str(tmp_path.resolve())]
    assert argv[argv.index("--served-model-name") + 1: argv.index("--uds")] == ["gpt-oss-20b", "gpt-oss"]
    assert argv[argv.index("--tensor-parallel-size") + 1] == "4" and argv[-2:] == ["--max-num-seqs", "64"]
    assert argv[argv.index("--max-model-len") + 1] == "16384"
    assert backend.supervisor.env["VLLM_SYSTEM_START_DATE"] == "2026-03-04"
    assert not any("TIKTOKEN" in w for w in warnings)  # the vocabulary ships with gptoss; the child is told where
    assert (Path(backend.supervisor.env["TIKTOKEN_ENCODINGS_BASE"]) / "o200k_base.tiktoken").is_file()
    close(backend)


def test_vllm_usage_errors(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="needs MODEL_DIR"):
        build_backend(settings({}), "vllm")
    with pytest.raises(UsageError, match="for --engine upstream"):
        build_backend(settings({"serve.upstream_url": "http://x/v1"}), "vllm", model_dir=tmp_path)
    with pytest.raises(UsageError, match="distributed-executor-backend"):
        build_backend(settings({"serve.distributed_executor_backend": "slurm"}), "vllm", model_dir=tmp_path,
                      env={"PATH": ""})
    with pytest.raises(CouldNotRun, match="not found on PATH"):
        build_backend(settings({}), "vllm", model_dir=tmp_path, env={"PATH": str(tmp_path)})
