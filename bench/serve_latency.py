"""HTTP overhead of `gptoss serve`: p50 latency of a 16-token chat request over HTTP minus p50 of generating the same
tokens in-process, on the demo model, measured in the same run with the same engine object.

    python bench/serve_latency.py [--runs 30] [--tokens 16] [--threads 1] [--scripted]

The in-process side calls ``engine.generate`` with exactly the prompt ids and SamplingParams the server builds for
the request (greedy); the HTTP side is a non-streaming ``POST /v1/chat/completions`` over a kept-alive connection to
a real uvicorn on 127.0.0.1. Both must produce the same number of tokens. Target: overhead <= 5 ms.
The app is what ``gptoss serve`` runs: the one pipeline (scheduler, metrics, access log) with the response cache off
(or the greedy request would be answered from it). ``--scripted`` measures the layer alone over the scripted engine (no torch needed). ``--threads`` sets torch's
intra-op threads (default 1: on a small shared machine, OpenMP threads spinning against other processes make the
tiny model's step time swing by 10x, which drowns the few milliseconds being measured).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gptoss_cli.serve.openai.chat import plan_chat  # noqa: E402
from gptoss_cli.serve.openai.params import model_info  # noqa: E402
from gptoss_cli.serve.openai.protocol import ChatCompletionRequest  # noqa: E402
from gptoss_cli.serve.settings import ServeSettings  # noqa: E402


class _AlreadyLoaded:
    """The same engine object, loaded once by the bench (the server's lifespan must not load it again)."""

    def __init__(self, engine: Any) -> None:
        self._engine = engine
        self.tokenizer = engine.tokenizer
        self.max_model_len = engine.max_model_len
        self.description = getattr(engine, "description", "engine")

    def load(self) -> None:
        pass

    def generate(self, prompt_ids: list[int], params: Any) -> Any:
        return self._engine.generate(prompt_ids, params)

    def close(self) -> None:
        pass


def _engine(args: argparse.Namespace) -> Any:
    if args.scripted:
        from gptoss_cli.serve.engines.scripted import ScriptedEngine

        return ScriptedEngine(script=["<|channel|>final<|message|>" + "word " * 200])
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from gptoss_cli.demo import demo_model_dir
    from gptoss_cli.serve.engines.transformers.engine import TransformersEngine

    model_dir = demo_model_dir()
    return TransformersEngine(model_dir, device="cpu", dtype="float32", max_model_len=None)


async def _in_process(engine: Any, prompt_ids: list[int], params: Any) -> tuple[float, int]:
    t0 = time.perf_counter()
    n = 0
    async for _ in engine.generate(list(prompt_ids), params):
        n += 1
    return time.perf_counter() - t0, n


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--tokens", type=int, default=16)
    parser.add_argument("--scripted", action="store_true", help="scripted engine instead of the demo model")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (0: torch's default)")
    args = parser.parse_args()

    import httpx

    sys.path.insert(0, str(ROOT / "tests"))
    from serve_fixtures import live_server  # the tests' bounded uvicorn-in-a-thread helper

    from gptoss_cli.serve.openai.app import create_app

    engine = _engine(args)
    t_load = time.perf_counter()
    engine.load()
    print(f"engine: {engine.description} (loaded in {time.perf_counter() - t_load:.1f} s)", file=sys.stderr)
    settings = ServeSettings(current_date="2025-06-01", cache=False)
    body = {"model": settings.served_model_name, "max_tokens": args.tokens, "temperature": 0,
            "messages": [{"role": "user", "content": "What is the capital of France?"}]}
    plan = plan_chat(ChatCompletionRequest.model_validate(body),
                     settings, model_info(engine.tokenizer, engine.max_model_len, settings))
    prompt_ids, params = plan.generation.prompt_ids, plan.generation.params

    loop = asyncio.new_event_loop()
    app = create_app(settings, _AlreadyLoaded(engine), emit_access_log=lambda line: None)
    logging.getLogger("gptoss.serve").setLevel(logging.WARNING)
    local: list[float] = []
    remote: list[float] = []
    counts: set[tuple[int, int]] = set()
    with live_server(app) as base, httpx.Client(base_url=base, timeout=120) as http:
        for i in range(args.runs + 3):  # 3 warm-up rounds, then interleaved samples
            seconds, n_local = loop.run_until_complete(_in_process(engine, prompt_ids, params))
            t0 = time.perf_counter()
            r = http.post("/v1/chat/completions", content=json.dumps(body),
                          headers={"content-type": "application/json"})
            elapsed = time.perf_counter() - t0
            r.raise_for_status()
            if i >= 3:
                local.append(seconds)
                remote.append(elapsed)
                counts.add((n_local, r.json()["usage"]["completion_tokens"]))
    loop.close()
    p50_local, p50_http = statistics.median(local), statistics.median(remote)
    overhead_ms = (p50_http - p50_local) * 1000
    print(f"tokens per request (in-process, HTTP): {sorted(counts)}")
    print(f"in-process generate p50 {p50_local * 1000:8.2f} ms  (min {min(local) * 1000:.2f}, {args.runs} runs)")
    print(f"HTTP request        p50 {p50_http * 1000:8.2f} ms  (min {min(remote) * 1000:.2f}, {args.runs} runs)")
    verdict = "ok" if overhead_ms <= 5 else "OVER TARGET"
    print(f"HTTP overhead p50       {overhead_ms:8.2f} ms  (target <= 5 ms: {verdict})")
    return 0 if all(a == b for a, b in counts) else 1


if __name__ == "__main__":
    sys.exit(main())
