"""Load benchmark: ``gptoss serve`` vs ``transformers serve --continuous-batching`` on the same model, same run.

    python bench/serve_load.py [MODEL_DIR] [--clients 1,8,32] [--tokens 64] [--rounds 2] [--threads N]
                               [--repeat 3] [--peer-path DIR]

``transformers serve`` always loads with a ``device_map`` and so needs ``accelerate``, which gptoss does not: give it
to the peer only, e.g. ``pip install --target /tmp/peer --no-deps accelerate psutil`` and ``--peer-path /tmp/peer``.

MODEL_DIR defaults to the demo model shipped in gptoss_cli/demo/model. Both servers run on 127.0.0.1 with the same
torch thread count, one after the other (never at the same time, so they do not steal each other's cores), and
``--repeat`` times, alternating which goes first: these machines are noisy (the same wave swings by 2x between
runs), so a comparison is the median of ``--repeat`` pairs measured next to each other, not one pair. For each
concurrency level every client sends ``--rounds`` streamed chat requests (distinct prompts, temperature 0,
``max_tokens`` = ``--tokens``). Printed per server and level: completion tokens/s (all tokens / wall time), time to
first token p50/p95 (each the median over the repeats), and each server's peak RSS (VmHWM from /proc); then the
ratios gptoss / peer: the median of the per-repeat ratios, with every repeat's ratio after it.

The peer: ``transformers serve DIR --continuous-batching --cb-num-blocks 32 --cb-max-batch-tokens 512``. Ours:
``gptoss serve DIR --skip-verify --max-concurrency C --no-cache`` (the response cache is off: it would answer
repeated prompts without the model and make the comparison meaningless).

Same prompt tokens on both sides: ours gets a chat request and renders it in the harmony format; the peer has no
harmony chat template (and no harmony parser), so it gets that very harmony text on ``/v1/completions``. Tokens are
counted from each server's ``usage``; time to first token is the time to the first streamed chunk that carries a
choice (our first chunk goes out when the first token is generated; the peer's with its first decoded text).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
TOPICS = ["weather", "rivers", "bread", "stars", "trains", "music", "glass", "bees", "maps", "clocks", "salt", "ink",
          "moss", "kites", "tides", "owls"]


@dataclass
class Wave:
    clients: int
    tokens: int = 0
    wall: float = 0.0
    ttfts: list[float] = field(default_factory=list)
    errors: int = 0

    @property
    def tps(self) -> float:
        return self.tokens / self.wall if self.wall else 0.0

    def pct(self, q: float) -> float:
        if not self.ttfts:
            return float("nan")
        data = sorted(self.ttfts)
        return data[min(len(data) - 1, int(round(q * (len(data) - 1))))]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def peak_rss_mb(pid: int) -> float:
    """VmHWM of ``pid`` and its children (MiB)."""
    total = 0
    pids = [pid]
    try:
        out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
        pids += [int(p) for p in out.split()]
    except OSError:
        pass
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def wait_up(base: str, path: str, proc: subprocess.Popen, timeout: float) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if proc.poll() is not None:
            raise SystemExit(f"server exited during start-up (code {proc.returncode}); see its log")
        try:
            if httpx.get(base + path, timeout=2).status_code == 200:
                return time.monotonic() - t0
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"{base} not ready after {timeout} s")


@dataclass(frozen=True)
class Target:
    name: str
    base: str
    model: str
    chat: bool  # True: /v1/chat/completions with messages; False: /v1/completions with the rendered prompt
    current_date: str


def request_for(target: Target, question: str, tokens: int) -> tuple[str, dict]:
    common = {"model": target.model, "max_tokens": tokens, "temperature": 0, "stream": True,
              "stream_options": {"include_usage": True}}
    messages = [{"role": "user", "content": question}]
    if target.chat:
        return "/v1/chat/completions", {**common, "messages": messages}
    from gptoss_cli.serve.harmony import RenderOptions, render_chat

    prompt = render_chat(messages, options=RenderOptions(current_date=target.current_date))
    return "/v1/completions", {**common, "prompt": prompt}


async def one_request(client: httpx.AsyncClient, target: Target, question: str, tokens: int, wave: Wave) -> None:
    path, body = request_for(target, question, tokens)
    t0 = time.perf_counter()
    first = None
    chunks = 0
    usage = None
    try:
        async with client.stream("POST", path, json=body) as r:
            if r.status_code != 200:
                wave.errors += 1
                await r.aread()
                return
            async for line in r.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                data = json.loads(line[6:])
                if data.get("usage"):
                    usage = data["usage"]
                choices = data.get("choices") or []
                if choices and first is None:
                    first = time.perf_counter() - t0
                chunks += len(choices)
    except httpx.HTTPError:
        wave.errors += 1
        return
    wave.tokens += int(usage["completion_tokens"]) if usage else chunks
    if first is not None:
        wave.ttfts.append(first)


async def run_wave(target: Target, clients: int, rounds: int, tokens: int) -> Wave:
    wave = Wave(clients)
    limits = httpx.Limits(max_connections=clients + 4)
    async with httpx.AsyncClient(base_url=target.base, timeout=600, limits=limits) as client:
        async def worker(i: int) -> None:
            for r in range(rounds):
                topic = TOPICS[(i + r) % len(TOPICS)]
                await one_request(client, target, f"Tell me about {topic}, please ({i}-{r}).", tokens, wave)

        t0 = time.perf_counter()
        await asyncio.gather(*[worker(i) for i in range(clients)])
        wave.wall = time.perf_counter() - t0
    return wave


def measure(target: Target, argv: list[str], ready_path: str, levels: list[int], rounds: int, tokens: int,
            env: dict[str, str], log: Path) -> tuple[list[Wave], float, float]:
    with open(log, "w") as logf:
        proc = subprocess.Popen(argv, stdout=logf, stderr=subprocess.STDOUT, env=env, cwd=str(ROOT),
                                start_new_session=True)
    try:
        startup = wait_up(target.base, ready_path, proc, 600)
        asyncio.run(run_wave(target, 1, 1, 8))  # warm-up (first-call set-up is not throughput)
        waves = [asyncio.run(run_wave(target, c, rounds, tokens)) for c in levels]
        rss = peak_rss_mb(proc.pid)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=60)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    print(f"{target.name}: ready in {startup:.1f} s, peak RSS {rss:.0f} MiB (log: {log})", file=sys.stderr)
    return waves, rss, startup


def demo_dir() -> Path:
    from gptoss_cli.demo import demo_model_dir

    return demo_model_dir()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model_dir", nargs="?", type=Path)
    ap.add_argument("--clients", default="1,8,32")
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=0, help="torch threads for both servers (0: torch's default)")
    ap.add_argument("--repeat", type=int, default=3, help="pairs of runs, alternating which server goes first")
    ap.add_argument("--peer-path", default="", help="extra PYTHONPATH for transformers serve (accelerate)")
    args = ap.parse_args()
    levels = [int(x) for x in args.clients.split(",")]
    folder = args.model_dir or demo_dir()
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
    bindir = Path(sys.executable).parent
    gptoss = shutil.which("gptoss", path=str(bindir)) or "gptoss"
    peer = shutil.which("transformers", path=str(bindir)) or "transformers"
    logs = Path(tempfile.mkdtemp(prefix="gptoss-bench-"))
    served = "gpt-oss-bench"

    date = "2025-08-05"
    p1 = free_port()
    ours_argv = [gptoss, "serve", str(folder), "--skip-verify", "--port", str(p1), "--served-model-name", served,
                 "--max-concurrency", str(max(levels)), "--max-queue", str(4 * max(levels)), "--no-cache",
                 "--device", "cpu", "--current-date", date]
    ours_target = Target("gptoss serve", f"http://127.0.0.1:{p1}", served, True, date)
    p2 = free_port()
    peer_argv = [peer, "serve", str(folder), "--continuous-batching", "--cb-num-blocks", "32",
                 "--cb-max-batch-tokens", "512", "--host", "127.0.0.1", "--port", str(p2), "--device", "cpu"]
    peer_target = Target("transformers serve", f"http://127.0.0.1:{p2}", str(folder), False, date)
    peer_env = dict(env)
    if args.peer_path:
        peer_env["PYTHONPATH"] = os.pathsep.join(p for p in (args.peer_path, env.get("PYTHONPATH")) if p)
    check = subprocess.run([sys.executable, "-c", "import accelerate"], env=peer_env, capture_output=True)
    if check.returncode != 0:
        raise SystemExit("transformers serve needs `accelerate`; install it for the peer and pass --peer-path")
    sides = {
        "ours": (ours_target, ours_argv, "/ready", env, "gptoss"),
        "peer": (peer_target, peer_argv, "/health", peer_env, "transformers"),
    }
    runs: dict[str, list[tuple[list[Wave], float, float]]] = {"ours": [], "peer": []}
    for i in range(max(1, args.repeat)):
        for side in (("ours", "peer") if i % 2 == 0 else ("peer", "ours")):
            target, argv, ready, side_env, name = sides[side]
            runs[side].append(measure(target, argv, ready, levels, args.rounds, args.tokens, side_env,
                                      logs / f"{name}-{i}.log"))
    report(levels, runs, args)


def report(levels: list[int], runs: dict[str, list[tuple[list[Wave], float, float]]], args: argparse.Namespace) -> None:
    med = statistics.median
    print(f"model: {args.model_dir or demo_dir()}   tokens/request: {args.tokens}   rounds/client: {args.rounds}   "
          f"threads: {args.threads or 'default'}   repeats: {len(runs['ours'])} (medians)")
    head = f"{'clients':>7} | {'server':<18} | {'tok/s':>8} | {'TTFT p50':>9} | {'TTFT p95':>9} | {'tokens':>6} | err"
    print(head)
    print("-" * len(head))
    for k, clients in enumerate(levels):
        ours = [waves[k] for waves, _, _ in runs["ours"]]
        theirs = [waves[k] for waves, _, _ in runs["peer"]]
        for name, ws in (("gptoss serve", ours), ("transformers serve", theirs)):
            print(f"{clients:>7} | {name:<18} | {med(w.tps for w in ws):>8.1f} | "
                  f"{med(w.pct(0.5) for w in ws) * 1000:>7.0f}ms | {med(w.pct(0.95) for w in ws) * 1000:>7.0f}ms | "
                  f"{ws[0].tokens:>6} | {sum(w.errors for w in ws)}")
        ratios = [a.tps / b.tps if b.tps else float("nan") for a, b in zip(ours, theirs)]
        ttfts = [a.pct(0.5) / b.pct(0.5) if b.ttfts else float("nan") for a, b in zip(ours, theirs)]
        each = ", ".join(f"{r:.2f}x/{t:.2f}x" for r, t in zip(ratios, ttfts))
        print(f"{'':>7} | {'ratio ours/peer':<18} | {med(ratios):>7.2f}x | {med(ttfts):>8.2f}x | (each: {each})")
    ours_rss = max(rss for _, rss, _ in runs["ours"])
    peer_rss = max(rss for _, rss, _ in runs["peer"])
    ours_start = med(start for _, _, start in runs["ours"])
    peer_start = med(start for _, _, start in runs["peer"])
    print(f"peak RSS: gptoss {ours_rss:.0f} MiB, transformers {peer_rss:.0f} MiB, ratio {ours_rss / peer_rss:.2f}x; "
          f"ready in {ours_start:.1f} s vs {peer_start:.1f} s")

if __name__ == "__main__":
    main()
