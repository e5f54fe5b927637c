"""Benchmark: `gptoss fetch` against `hf download` from the same loopback Hub, measured in the same run.

    python bench/fetch.py                     # ~1 GB in 3 safetensors files, 3 rounds
    python bench/fetch.py --total-mb 300 --repeat 5

The server is the test suite's fake Hub (tests/hub_fixtures.py) serving files from disk with sendfile. Each round
runs both tools into fresh folders, in alternating order. `gptoss fetch` hashes every byte (sha256) while it
downloads; `hf download` (plain HTTP; the fake Hub advertises no Xet) checks sizes only. Prints median wall times,
throughput and the ratio hf time / gptoss time (>= 1.0 means gptoss is at least as fast, hashing included).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.hub_fixtures import FakeHub, FakeRepo  # noqa: E402

BIN = Path(sys.executable).parent


def make_files(root: Path, total_mb: int) -> dict[str, object]:
    block = os.urandom(32 * 1024 * 1024)
    sizes = [total_mb * 4 // 10, total_mb * 4 // 10, total_mb - 2 * (total_mb * 4 // 10)]
    files: dict[str, object] = {"config.json": b'{"model_type": "gpt_oss"}\n'}
    for i, mb in enumerate(sizes):
        path = root / f"model-{i:05d}-of-00002.safetensors"
        remaining = mb * 1024 * 1024
        with open(path, "wb") as fh:
            fh.write(i.to_bytes(8, "little"))
            remaining -= 8
            while remaining > 0:
                n = min(len(block), remaining)
                fh.write(block[:n])
                remaining -= n
        files[path.name] = path
    return files


def run(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed ({done.returncode}): {done.stderr[-2000:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--total-mb", type=int, default=1024)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=8)
    parser.add_argument("--dir", type=Path, default=None, help="scratch folder (default: a temp dir)")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="gptoss-bench-fetch-", dir=args.dir))
    try:
        src = root / "src"
        src.mkdir()
        files = make_files(src, args.total_mb)
        total = sum(len(c) if isinstance(c, bytes) else c.stat().st_size for c in files.values())
        with FakeHub([FakeRepo.build("bench/gpt-oss-tiny", files)]) as hub:
            env = {**os.environ, "HF_HOME": str(root / "hf-home"), "HF_ENDPOINT": hub.url,
                   "HF_HUB_DISABLE_XET": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1", "HF_HUB_DISABLE_TELEMETRY": "1",
                   "NO_COLOR": "1"}
            gptoss = [str(BIN / "gptoss"), "fetch", "--no-code", "--endpoint", hub.url, "--model",
                      "bench/gpt-oss-tiny", "--jobs", str(args.jobs), "--include", "*"]
            hf = [str(BIN / "hf"), "download", "bench/gpt-oss-tiny", "--max-workers", str(args.jobs)]
            times: dict[str, list[float]] = {"gptoss fetch": [], "hf download": []}
            for i in range(args.repeat):
                order = ["gptoss fetch", "hf download"] if i % 2 == 0 else ["hf download", "gptoss fetch"]
                for name in order:
                    out = root / f"out-{name.split()[0]}"
                    shutil.rmtree(out, ignore_errors=True)
                    shutil.rmtree(root / "hf-home", ignore_errors=True)
                    cmd = gptoss + ["--dest", str(out)] if name == "gptoss fetch" else hf + ["--local-dir", str(out)]
                    times[name].append(run(cmd, env))
                    shutil.rmtree(out, ignore_errors=True)
        med = {k: statistics.median(v) for k, v in times.items()}
        mb = total / 1e6
        print(f"== {mb:.0f} MB in {len(files)} files over loopback, {os.cpu_count()} cores, median of {args.repeat}")
        for name, t in med.items():
            print(f"  {name:14s} {t:7.3f} s  {mb / t:8.1f} MB/s   runs: {', '.join(f'{x:.2f}' for x in times[name])}")
        print(f"  throughput ratio gptoss / hf: {med['hf download'] / med['gptoss fetch']:.2f}x "
              "(gptoss sha256-checks every byte; hf checks sizes only)")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
