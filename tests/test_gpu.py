"""GPU path of the transformers engine (marker ``gpu``; skipped without CUDA).

These load the tiny built-in demo model (a real ``GptOssForCausalLM``: MoE, sinks, sliding window) on CUDA through
``TransformersEngine`` and check device placement, dtype, greedy determinism and the HTTP path on top. They run on a
machine with an NVIDIA GPU (``pytest -m gpu``); everywhere else they are skipped with the reason.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.gpu


def _cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


if not _cuda():
    pytest.skip("no CUDA device here (GPU tests run on a GPU machine: pytest -m gpu)", allow_module_level=True)


@pytest.fixture(scope="module")
def demo_dir() -> Path:
    from gptoss_cli.demo import demo_model_dir

    return demo_model_dir()


def _engine(folder: Path, dtype: str = "auto") -> Any:
    from gptoss_cli.serve.engines.transformers.engine import TransformersEngine

    engine = TransformersEngine(folder, device="cuda", dtype=dtype, max_model_len=None)
    engine.load()
    return engine


def _generate(engine: Any, max_tokens: int = 16) -> list[int]:
    from gptoss_cli.serve.engines.interface import SamplingParams

    prompt = engine.tokenizer.encode("<|start|>user<|message|>What is the capital of France?<|end|>"
                                     "<|start|>assistant")

    async def go() -> list[int]:
        return [t async for t in engine.generate(prompt, SamplingParams(max_tokens=max_tokens, temperature=0.0))]

    return asyncio.run(asyncio.wait_for(go(), 120))


def _model(engine: Any) -> Any:
    model = getattr(engine, "model", None)
    assert model is not None, "TransformersEngine exposes the loaded model as .model"
    return model


def test_tiny_model_on_cuda_generates_deterministically(demo_dir: Path) -> None:
    engine = _engine(demo_dir)
    try:
        param = next(_model(engine).parameters())
        assert param.device.type == "cuda"
        first, second = _generate(engine), _generate(engine)
        assert first and len(first) <= 16 and first == second
    finally:
        engine.close()


def test_cuda_bfloat16(demo_dir: Path) -> None:
    import torch

    engine = _engine(demo_dir, dtype="bfloat16")
    try:
        assert next(_model(engine).parameters()).dtype == torch.bfloat16
        assert _generate(engine, 8)
    finally:
        engine.close()
    assert torch.cuda.memory_allocated() < 512 * 1024 * 1024  # closing released (almost) everything


def test_http_on_cuda(demo_dir: Path) -> None:
    from starlette.testclient import TestClient

    from gptoss_cli.serve.openai.app import create_app
    from gptoss_cli.serve.settings import ServeSettings
    from gptoss_cli.serve.engines.transformers.engine import TransformersEngine

    engine = TransformersEngine(demo_dir, device="cuda", dtype="auto", max_model_len=None)
    app = create_app(ServeSettings(current_date="2026-01-01"), engine)
    with TestClient(app) as client:
        for _ in range(600):
            if client.get("/ready").status_code == 200:
                break
            asyncio.run(asyncio.sleep(0.1))
        reply = client.post("/v1/chat/completions", json={
            "model": "gpt-oss-20b", "messages": [{"role": "user", "content": "What is the capital of France?"}],
            "max_tokens": 64, "temperature": 0})
        assert reply.status_code == 200, reply.text
        body = reply.json()
        assert body["object"] == "chat.completion" and body["usage"]["completion_tokens"] > 0
        assert "<|" not in (body["choices"][0]["message"]["content"] or "")
