"""Does the real gpt-oss-20b fit a 24 GiB CPU box? Build a full-size random-weight checkpoint in the real format
(bench/fullsize.py, 13.8 GB of real data) and serve it with ``gptoss serve`` (packed MXFP4 experts), then report
load time, peak RSS (the server process's VmHWM), the memory estimate it printed, TTFT and tok/s.

    python bench/mxfp4_fits.py [--dir /tmp/gptoss-20b-random] [--max-model-len 8192] [--tokens 16] [--keep]
    python bench/mxfp4_fits.py --layers 2 --mxfp4 dequantise      # a quick full-width check of the estimate

Not run in CI (it needs ~14 GB of disk, ~14 GiB of memory and minutes of CPU). The checkpoint is deleted at the end
unless ``--keep`` (a kept one is reused by the next run). Exit 1 when the peak RSS exceeds ``--limit-gib``
(default 16) or the estimate is off by more than 10 %.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fullsize  # noqa: E402

GIB = 1024**3
PROMPT = [{"role": "user", "content": "Explain in three sentences why the sky is blue."}]


def vm_hwm(pid: int) -> int:
    """The process's peak resident set (VmHWM), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def start_server(folder: Path, args: argparse.Namespace) -> tuple[subprocess.Popen, str, float, list[str]]:
    """``gptoss serve`` in a child; returns (process, base URL, seconds to ready, its stderr lines so far)."""
    cmd = [sys.executable, "-m", "gptoss_cli", "serve", str(folder), "--port", "0", "--skip-verify",
           "--device", args.device, "--mxfp4", args.mxfp4, "--current-date", "2026-12-01", "--no-cache"]
    if args.max_model_len:
        cmd += ["--max-model-len", str(args.max_model_len)]
    if args.dtype:
        cmd += ["--dtype", args.dtype]
    env = {**os.environ, "GPTOSS_API_KEY": ""}
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env)
    lines: list[str] = []
    assert proc.stderr is not None
    for line in proc.stderr:
        lines.append(line.rstrip())
        print("   |", line.rstrip()[:220], flush=True)
        found = re.search(r"gptoss: ready: .* at (http://\S+)/v1", line)
        if found:
            drain = threading.Thread(target=lambda: [lines.append(x.rstrip()) for x in proc.stderr], daemon=True)
            drain.start()
            return proc, found.group(1), time.perf_counter() - started, lines
    raise SystemExit(f"the server exited ({proc.wait()}) before it was ready")


def stream_once(url: str, tokens: int, prompt_tokens: int = 0) -> dict[str, Any]:
    import httpx

    messages = PROMPT if not prompt_tokens else [{"role": "user", "content": "sky " * prompt_tokens}]
    body = {"model": "gpt-oss-20b", "messages": messages, "max_tokens": tokens, "temperature": 0, "stream": True,
            "stream_options": {"include_usage": True}}
    sent = time.perf_counter()
    first = last = None
    usage: dict[str, Any] = {}
    with httpx.stream("POST", url + "/v1/chat/completions", json=body, timeout=3600) as reply:
        reply.raise_for_status()
        for line in reply.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            usage = chunk.get("usage") or usage
            delta = (chunk.get("choices") or [{}])[0].get("delta") or {}
            if any(delta.get(k) for k in ("content", "reasoning", "tool_calls")):
                now = time.perf_counter()
                first = first or now
                last = now
    done = time.perf_counter()
    produced = int(usage.get("completion_tokens") or 0)
    first = first or done
    rate = (produced - 1) / ((last or done) - first) if produced > 1 and last and last > first else 0.0
    return {"ttft_s": first - sent, "tokens": produced, "tok_s": rate, "total_s": done - sent}


def estimate_from(lines: list[str]) -> float | None:
    for line in lines:
        found = re.search(r"gptoss: memory: about ([\d.]+) GiB", line)
        if found:
            return float(found.group(1)) * GIB
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", type=Path, default=Path("/tmp/gptoss-20b-random"))
    parser.add_argument("--layers", type=int, default=24)
    parser.add_argument("--max-model-len", type=int, default=8192)
    parser.add_argument("--mxfp4", default="auto")
    parser.add_argument("--dtype", default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--tokens", type=int, default=16)
    parser.add_argument("--prompt-tokens", type=int, default=0,
                        help="send a prompt of about this many tokens (fill the context to test the estimate)")
    parser.add_argument("--limit-gib", type=float, default=16.0)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    folder = fullsize.build(args.dir, args.layers)
    build_s = time.perf_counter() - t0
    proc = None
    try:
        proc, url, load_s, lines = start_server(folder, args)
        run = stream_once(url, args.tokens, args.prompt_tokens)
        peak = vm_hwm(proc.pid)
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(60)
        if not args.keep:
            shutil.rmtree(args.dir, ignore_errors=True)
    estimate = estimate_from(lines)
    ready = next((x for x in lines if "gptoss: ready:" in x), "")
    print(f"\ncheckpoint: {args.layers} layers, built/reused in {build_s:.0f} s")
    print(f"path:       {ready.split('(', 1)[-1].split(') at')[0] if ready else '?'}")
    print(f"load:       {load_s:.1f} s to ready")
    print(f"peak RSS:   {peak / GIB:.2f} GiB (limit {args.limit_gib} GiB)")
    off = (estimate - peak) / peak * 100 if estimate else float("nan")
    print(f"estimate:   {estimate / GIB if estimate else float('nan'):.2f} GiB ({off:+.1f} % against the peak)")
    print(f"TTFT:       {run['ttft_s']:.1f} s; {run['tokens']} tokens, decode {run['tok_s']:.2f} tok/s")
    ok = peak <= args.limit_gib * GIB and estimate is not None and abs(off) <= 10
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
