"""HTTP overhead of `gptoss serve`: p50 latency of a 16-token chat request over HTTP minus p50 of generating the same
tokens in-process, on the demo model, measured in the same run with the same engine object.

    python bench/serve_latency.py [--runs 30] [--tokens 16] [--threads 1] [--scripted] [--policy FILE]

The in-process side calls ``engine.generate`` with exactly the prompt ids and SamplingParams the server builds for
the request (greedy); the HTTP side is a non-streaming ``POST /v1/chat/completions`` over a kept-alive connection to
a real uvicorn on 127.0.0.1. Both must produce the same number of tokens. Target: overhead <= 5 ms.
The app is what ``gptoss serve`` runs: the one pipeline (scheduler, metrics, access log) with the response cache off
(or the greedy request would be answered from it). ``--scripted`` measures the layer alone over the scripted engine (no torch needed). ``--threads`` sets torch's
intra-op threads (default 1: on a small shared machine, OpenMP threads spinning against other processes make the
tiny model's step time swing by 10x, which drowns the few milliseconds being measured).
``--policy FILE`` runs a second server with that policy in the same loop (requests interleaved) and prints its p50
next to the one without, then how much of a stream the policy holds back (characters behind the model, on a mixed
Chinese/English sample fed about one token at a time) and what filtering one piece costs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
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


SAMPLE = ("患者主诉胸痛三小时，既往高血压病史。The patient reports chest pain for three hours; ECG shows ST "
          "elevation. 建议立即转诊心内科，联系电话请见病历。Follow-up in two weeks at the outpatient clinic, "
          "room 12. 请按时服药，如有不适随时就诊。") * 4


def _hold_back(policy_file: str) -> None:
    """How much a policy holds back of a stream: the sample fed in 4-character pieces (about one token each)."""
    from gptoss_cli.serve.policy import load_policy
    from gptoss_cli.serve.policy.redact import StreamRedactor

    rules = load_policy(policy_file).output_rules("final")
    redactor = StreamRedactor(rules, lambda rule: None)
    held, costs = [], []
    for i in range(0, len(SAMPLE), 4):
        t0 = time.perf_counter()
        redactor.feed(SAMPLE[i:i + 4])
        costs.append(time.perf_counter() - t0)
        held.append(len(redactor.held))
    redactor.flush()
    bound = max((m.window for r in rules for m in r.matchers), default=0)
    print(f"stream hold-back (final channel, {len(held)} pieces of 4 chars): mean {statistics.mean(held):.1f} chars, "
          f"p50 {statistics.median(held):.0f}, max {max(held)} (the longest pattern's bound: {bound}); "
          f"filter cost p50 {statistics.median(costs) * 1e6:.1f} us per piece")


def _p50(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--tokens", type=int, default=16)
    parser.add_argument("--scripted", action="store_true", help="scripted engine instead of the demo model")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (0: torch's default)")
    parser.add_argument("--policy", metavar="FILE", help="also measure a server with this --policy (same run)")
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
    if args.policy:  # the glossary joins the prompt: the in-process side generates from the same prompt
        from gptoss_cli.serve.policy import load_policy

        if load_policy(args.policy).has_input:
            print("note: the policy rewrites input; the policy side's prompt differs", file=sys.stderr)

    loop = asyncio.new_event_loop()
    apps = {"off": create_app(settings, _AlreadyLoaded(engine), emit_access_log=lambda line: None)}
    if args.policy:
        apps["on"] = create_app(ServeSettings(current_date="2025-06-01", cache=False, policy=args.policy),
                                _AlreadyLoaded(engine), emit_access_log=lambda line: None)
    logging.getLogger("gptoss.serve").setLevel(logging.WARNING)
    local: list[float] = []
    remote: dict[str, list[float]] = {name: [] for name in apps}
    counts: set[tuple[int, int]] = set()
    with contextlib.ExitStack() as stack:
        clients = {name: stack.enter_context(httpx.Client(base_url=stack.enter_context(live_server(app)),
                                                          timeout=120)) for name, app in apps.items()}
        for i in range(args.runs + 3):  # 3 warm-up rounds, then interleaved samples
            seconds, n_local = loop.run_until_complete(_in_process(engine, prompt_ids, params))
            for name, http in clients.items():
                t0 = time.perf_counter()
                r = http.post("/v1/chat/completions", content=json.dumps(body),
                              headers={"content-type": "application/json"})
                elapsed = time.perf_counter() - t0
                r.raise_for_status()
                if i >= 3:
                    remote[name].append(elapsed)
                    if name == "off":
                        counts.add((n_local, r.json()["usage"]["completion_tokens"]))
            if i >= 3:
                local.append(seconds)
    loop.close()
    p50_local = _p50(local)
    overhead_ms = _p50(remote["off"]) - p50_local
    print(f"tokens per request (in-process, HTTP): {sorted(counts)}")
    print(f"in-process generate p50 {p50_local:8.2f} ms  (min {min(local) * 1000:.2f}, {args.runs} runs)")
    print(f"HTTP request        p50 {_p50(remote['off']):8.2f} ms  (min {min(remote['off']) * 1000:.2f}, "
          f"{args.runs} runs)")
    verdict = "ok" if overhead_ms <= 5 else "OVER TARGET"
    print(f"HTTP overhead p50       {overhead_ms:8.2f} ms  (target <= 5 ms: {verdict})")
    if args.policy:
        print(f"HTTP request, --policy p50 {_p50(remote['on']):8.2f} ms  (min {min(remote['on']) * 1000:.2f}): "
              f"policy on - off {_p50(remote['on']) - _p50(remote['off']):+.2f} ms p50")
        _hold_back(args.policy)
    return 0 if all(a == b for a, b in counts) else 1


if __name__ == "__main__":
    sys.exit(main())
