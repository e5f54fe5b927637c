"""Benchmark: `gptoss verify` against `openssl dgst -sha256` and coreutils `sha256sum`, measured in the same run.

    python bench/verify.py                      # 1 file and 2 files of 1024 MB, 3 repeats
    python bench/verify.py --size-mb 256 --files 4 --repeat 5

Prints the median wall time of each tool and ratios as throughput multiples (peer time / gptoss time; > 1 means
gptoss is faster). `gptoss verify` is timed as a subprocess (interpreter and CLI start-up included) and, separately,
as the in-process core call `verify_lock()` (the hashing engine alone). Files are read once first so every tool
hashes from the page cache. Targets (issue 3): >= 0.9 x openssl for one file; >= 1.7 x one-core openssl for >= 2
files on 2 cores; >= 3.5 x sha256sum.
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

from gptoss_cli.lockfile import Lock, LockedFile, ModelPin, write_lock  # noqa: E402
from gptoss_cli.verify import hash_file, verify_lock  # noqa: E402

GPTOSS = [str(Path(sys.executable).with_name("gptoss"))]


def make_dest(root: Path, files: int, size_mb: int) -> tuple[Path, list[Path]]:
    block = os.urandom(64 * 1024 * 1024)
    model = root / "model"
    model.mkdir(parents=True)
    paths, entries = [], []
    for i in range(files):
        path = model / f"model-{i:05d}-of-{files:05d}.safetensors"
        remaining = size_mb * 1024 * 1024
        with open(path, "wb") as fh:
            fh.write(i.to_bytes(8, "little"))  # files differ
            remaining -= 8
            while remaining > 0:
                fh.write(block[: min(len(block), remaining)])
                remaining -= min(len(block), remaining)
        sha, _, _ = hash_file(path)
        entries.append(LockedFile(path.name, path.stat().st_size, sha, "lfs"))
        paths.append(path)
    write_lock(root, Lock(code=None, model=ModelPin("hf", "bench/model", "0" * 40, "https://huggingface.co"),
                          files=tuple(entries)))
    return root, paths


def timed_round_robin(tools: dict, repeat: int) -> dict[str, float]:
    """Median wall time per tool; tools take turns each round so machine noise hits them alike."""
    times: dict[str, list[float]] = {name: [] for name in tools}
    for _ in range(repeat):
        for name, fn in tools.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(ts) for name, ts in times.items()}


def run(cmd: list[str]) -> None:
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def scenario(root: Path, files: int, size_mb: int, repeat: int) -> None:
    dest, paths = make_dest(root / f"n{files}", files, size_mb)
    for p in paths:  # warm the page cache
        with open(p, "rb") as fh:
            while fh.read(1 << 24):
                pass
    names = [str(p) for p in paths]
    results = timed_round_robin({
        "openssl dgst -sha256": lambda: run(["openssl", "dgst", "-sha256", *names]),
        "sha256sum": lambda: run(["sha256sum", *names]),
        "gptoss verify (cli)": lambda: run([*GPTOSS, "verify", str(dest)]),
        "verify_lock() (core)": lambda: verify_lock(dest),
    }, repeat)
    total_mb = files * size_mb
    print(f"\n== {files} file(s) x {size_mb} MB = {total_mb} MB, {os.cpu_count()} cores, median of {repeat}")
    for name, t in results.items():
        print(f"  {name:24s} {t:7.3f} s  {total_mb / t:8.1f} MB/s")
    for ours in ("gptoss verify (cli)", "verify_lock() (core)"):
        o = results[ours]
        print(f"  {ours:24s} vs openssl: {results['openssl dgst -sha256'] / o:5.2f}x   "
              f"vs sha256sum: {results['sha256sum'] / o:5.2f}x")
    shutil.rmtree(dest)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=1024, help="size of each file")
    parser.add_argument("--files", type=int, default=2, help="file count of the multi-file scenario")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=None, help="scratch folder (default: a temp dir)")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="gptoss-bench-verify-", dir=args.dir))
    try:
        scenario(root, 1, args.size_mb, args.repeat)
        if args.files > 1:
            scenario(root, args.files, args.size_mb, args.repeat)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
