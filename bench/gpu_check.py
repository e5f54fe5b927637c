"""GPU check for MXFP4 (≤ 10 minutes on one GPU, no internet): the full-size random-weight gpt-oss-20b served by the
transformers engine with packed experts and, when it fits, dequantised.

    python bench/gpu_check.py [--dir /tmp/gptoss-20b-random] [--tokens 64] [--max-model-len 8192] [--json OUT]

It builds the checkpoint on the machine (bench/fullsize.py: 13.8 GB, the real tensor names, shapes and dtypes, the
real o200k_harmony tokenizer from the vocabulary shipped in gptoss_cli/vocab), then for each path prints: load time,
peak GPU memory (torch's allocator peak and what ``mem_get_info`` saw) against gptoss' estimate, TTFT p50 and decode
tok/s with 1 client and with 8 clients at once. It imports only torch, transformers (with tokenizers and
safetensors, which it depends on) and gptoss itself from this checkout; the HTTP front is not used, so fastapi and
uvicorn are not needed. ``--device cpu --layers 1`` runs the same code on a CPU (a smoke test).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]
import fullsize  # noqa: E402

GIB = 1024**3
PROMPT = ("<|start|>system<|message|>You are ChatGPT, a large language model trained by OpenAI.\nKnowledge cutoff: "
          "2024-06\nCurrent date: 2026-12-01\n\nReasoning: low\n\n# Valid channels: analysis, commentary, final. "
          "Channel must be included for every message.<|end|><|start|>user<|message|>Explain in three sentences "
          "why the sky is blue.<|end|><|start|>assistant")


async def _one(engine: Any, prompt: list[int], tokens: int) -> dict[str, float]:
    from gptoss_cli.serve.engines.interface import SamplingParams

    params = SamplingParams(max_tokens=tokens, temperature=0.0, stop_token_ids=(-1,))  # never stops early
    sent = time.perf_counter()
    stamps = [time.perf_counter() async for _ in engine.generate(prompt, params)]
    decode = (len(stamps) - 1) / (stamps[-1] - stamps[0]) if len(stamps) > 1 and stamps[-1] > stamps[0] else 0.0
    return {"ttft": stamps[0] - sent, "tok_s": decode, "tokens": len(stamps)}


def _clients(engine: Any, prompt: list[int], tokens: int, clients: int, rounds: int) -> dict[str, float]:
    async def main() -> list[dict[str, float]]:
        out: list[dict[str, float]] = []
        for _ in range(rounds):
            out += await asyncio.gather(*(_one(engine, prompt, tokens) for _ in range(clients)))
        return out

    started = time.perf_counter()
    runs = asyncio.run(main())
    wall = time.perf_counter() - started
    return {"clients": clients, "ttft_p50_s": statistics.median(r["ttft"] for r in runs),
            "decode_tok_s_per_client": statistics.median(r["tok_s"] for r in runs),
            "total_tok_s": sum(r["tokens"] for r in runs) / wall}


def _gpu_used(device: str) -> int | None:
    import torch

    if not device.startswith("cuda"):
        return None
    free, total = torch.cuda.mem_get_info(torch.device(device))
    return int(total - free)


def check_path(folder: Path, mode: str, args: argparse.Namespace) -> dict[str, Any]:
    """Load with ``--mxfp4 mode``, measure, close; a path that does not fit is reported, not run."""
    import torch

    from gptoss_cli.errors import CouldNotRun
    from gptoss_cli.serve.engines.transformers.batching import BatchingEngine
    from gptoss_cli.serve.engines.transformers.engine import TransformersEngine

    result: dict[str, Any] = {"mxfp4": mode}
    cuda = args.device.startswith("cuda")
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    before = _gpu_used(args.device)
    inner = TransformersEngine(folder, device=args.device, dtype="bfloat16", max_model_len=args.max_model_len,
                               mxfp4=mode)
    engine = BatchingEngine.wrap(inner, max_batch=8, kv_cache_bytes=2 * GIB)
    started = time.perf_counter()
    try:
        engine.load()
    except CouldNotRun as exc:
        return {**result, "skipped": exc.one_line()}
    result["load_s"] = time.perf_counter() - started
    result["engine"] = engine.description
    result["path_taken"] = inner.mxfp4
    result["estimate_gib"] = inner.plan.estimate.needed_bytes / GIB if inner.plan else None
    try:
        prompt = inner.tokenizer.encode(PROMPT)
        _clients(engine, prompt, 4, 1, 1)  # warm-up (allocator, kernels)
        result["one_client"] = _clients(engine, prompt, args.tokens, 1, 3)
        result["eight_clients"] = _clients(engine, prompt, args.tokens, 8, 1)
        if cuda:
            result["peak_allocated_gib"] = torch.cuda.max_memory_allocated() / GIB
            result["peak_reserved_gib"] = torch.cuda.max_memory_reserved() / GIB
            result["used_now_gib"] = ((_gpu_used(args.device) or 0) - (before or 0)) / GIB
    finally:
        engine.close()
        del engine, inner
        if cuda:
            torch.cuda.empty_cache()
    return result


def _print(r: dict[str, Any]) -> None:
    print(f"\n== --mxfp4 {r['mxfp4']}")
    if "skipped" in r:
        print(f"   skipped: {r['skipped']}")
        return
    print(f"   engine:     {r['engine']}  (path taken: {r['path_taken']})")
    print(f"   load:       {r['load_s']:.1f} s")
    if "peak_reserved_gib" in r:
        print(f"   GPU memory: peak allocated {r['peak_allocated_gib']:.2f} GiB, reserved "
              f"{r['peak_reserved_gib']:.2f} GiB; estimate {r['estimate_gib']:.2f} GiB")
    for key in ("one_client", "eight_clients"):
        c = r[key]
        print(f"   {c['clients']} client(s): TTFT p50 {c['ttft_p50_s'] * 1000:.0f} ms, decode "
              f"{c['decode_tok_s_per_client']:.1f} tok/s per client, {c['total_tok_s']:.1f} tok/s in all")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", type=Path, default=Path("/tmp/gptoss-20b-random"))
    parser.add_argument("--layers", type=int, default=24)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--max-model-len", type=int, default=8192)
    parser.add_argument("--paths", default="packed,dequantise")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)
    import torch

    from gptoss_cli.serve.engines.transformers.plan import native_status

    if args.device.startswith("cuda"):
        props = torch.cuda.get_device_properties(torch.device(args.device))
        print(f"device: {props.name}, {props.total_memory / GIB:.1f} GiB, CC {props.major}.{props.minor}; "
              f"torch {torch.__version__}")
    print(f"native MXFP4 kernels: {native_status(args.device).reason}")
    started = time.perf_counter()
    folder = fullsize.build(args.dir, args.layers)
    print(f"checkpoint ready in {time.perf_counter() - started:.0f} s")
    results = []
    for mode in args.paths.split(","):
        results.append(check_path(folder, mode, args))
        _print(results[-1])
        if args.json:
            args.json.write_text(json.dumps(results, indent=2))
    return 0 if all("skipped" not in r or r["mxfp4"] == "dequantise" for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
