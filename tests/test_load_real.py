"""The pipeline over the real transformers engine (tiny random GPT-OSS folder), over HTTP on 127.0.0.1:
batched greedy answers equal unbatched ones, seeded answers too, and the batch-size metric moves."""

from __future__ import annotations

import asyncio

import httpx
import pytest

pytest.importorskip("torch")

from gptoss_cli.serve.openai.app import create_app  # noqa: E402
from gptoss_cli.serve.engines.transformers.batching import BatchingEngine  # noqa: E402
from gptoss_cli.serve.engines.build import batched  # noqa: E402
from gptoss_cli.serve.settings import ServeSettings  # noqa: E402
from gptoss_cli.serve.engines.transformers.engine import TransformersEngine  # noqa: E402
from tests.load_fixtures import torch_threads  # noqa: E402
from tests.model_fixtures import make_tiny_model  # noqa: E402
from tests.serve_fixtures import live_server  # noqa: E402
from tests.test_load_http import scrape  # noqa: E402

pytestmark = [pytest.mark.timeout(240), pytest.mark.slow]

CHAT = "/v1/chat/completions"
QUESTIONS = ["Hi", "What is the weather in Paris today?", "Name three rivers.", "Why?",
             "Tell me a long story about a dragon and a baker.", "2+2"]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    with torch_threads(1):
        yield make_tiny_model(tmp_path_factory.mktemp("tiny-load"))


def app_for(folder, concurrency: int):
    settings = ServeSettings(current_date="2025-06-01", max_concurrency=concurrency, cache=False)
    from gptoss_cli.serve.engines.interface import EngineHooks
    from gptoss_cli.serve.generation.metrics import ServeMetrics

    metrics = ServeMetrics()  # the batch loop reports its steps to the app's metrics (given at construction)
    engine = batched(TransformersEngine(folder, device="cpu"), settings, EngineHooks(on_step=metrics.batch_step))
    app = create_app(settings, engine, metrics=metrics, emit_access_log=lambda line: None)
    return app, engine


async def ask_all(base: str, extra: dict) -> list[dict]:
    async with httpx.AsyncClient(base_url=base, timeout=120) as client:
        async def one(q: str) -> dict:
            r = await client.post(CHAT, json={"model": "gpt-oss-20b", "messages": [{"role": "user", "content": q}],
                                              "max_tokens": 24, **extra})
            assert r.status_code == 200, r.text
            data = r.json()
            return {"message": data["choices"][0]["message"], "usage": data["usage"]}

        return await asyncio.gather(*[one(q) for q in QUESTIONS])


def test_batched_equals_unbatched_over_http(tiny_dir):
    unbatched_app, plain = app_for(tiny_dir, 1)
    batched_app, wrapped = app_for(tiny_dir, 4)
    assert not isinstance(plain, BatchingEngine) and isinstance(wrapped, BatchingEngine)
    with torch_threads(1):
        with live_server(unbatched_app) as base:
            greedy_ref = asyncio.run(ask_all(base, {"temperature": 0}))
            seeded_ref = asyncio.run(ask_all(base, {"temperature": 0.9, "top_p": 0.9, "seed": 5}))
        with live_server(batched_app) as base:
            greedy = asyncio.run(ask_all(base, {"temperature": 0}))
            seeded = asyncio.run(ask_all(base, {"temperature": 0.9, "top_p": 0.9, "seed": 5}))
            metrics = scrape(base)
    assert greedy == greedy_ref
    assert seeded == seeded_ref
    assert metrics["gptoss_batch_size_count"] > 0
    # more than one request per decode step on average: they really were batched
    assert metrics["gptoss_batch_size_sum"] / metrics["gptoss_batch_size_count"] > 1.5
