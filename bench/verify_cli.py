"""Benchmark: the whole `gptoss verify` process — start-up and 2 x 1 GiB — against peers measured in the same run.

    python bench/verify_cli.py                    # start-up (15 runs) + 2 files of 1024 MB (3 repeats)
    python bench/verify_cli.py --runs 25 --size-mb 256 --repeat 5
    python bench/verify_cli.py --no-big           # start-up only

Start-up: medians of `python -c pass`, `gptoss verify --help` and `gptoss verify DEST` on a one-file lock (4 KiB),
each also shown minus the interpreter's own start (target: gptoss verify <= 150 ms in all). Throughput: the
`gptoss verify DEST` process (interpreter, imports, CLI and hashing) against one-core `openssl dgst -sha256` of
the same files (peer time / gptoss time; goal >= 1.7 x on two files); the core call `verify_lock()` in this
process is shown too, so the CLI's own share is visible. Files are read once first so every run hashes from the
page cache; tools take turns so machine noise hits them alike. The package is byte-compiled first, as pip does on
install (with PYTHONDONTWRITEBYTECODE=1 and no __pycache__, every run would compile gptoss_cli from source).
"""

from __future__ import annotations

import argparse
import compileall
import importlib.util
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gptoss_cli.verify import verify_lock  # noqa: E402


def _bench_verify():  # bench/verify.py's helpers (make_dest), loaded by path: bench/ is not a package
    spec = importlib.util.spec_from_file_location("bench_verify", ROOT / "bench" / "verify.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def gptoss_command() -> list[str]:
    script = Path(sys.executable).with_name("gptoss")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "gptoss_cli"]


def run(cmd: list[str]) -> None:
    subprocess.run(cmd, check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def medians(tools: dict[str, Callable[[], None]], runs: int) -> dict[str, float]:
    """Median wall time per tool; tools take turns each round."""
    times: dict[str, list[float]] = {name: [] for name in tools}
    for fn in tools.values():  # warm caches once
        fn()
    for _ in range(runs):
        for name, fn in tools.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(ts) for name, ts in times.items()}


def startup(root: Path, runs: int) -> None:
    tiny = _tiny_dest(root / "tiny")
    gptoss = gptoss_command()
    results = medians({
        "python -c pass": lambda: run([sys.executable, "-c", "pass"]),
        "gptoss --version": lambda: run([*gptoss, "--version"]),
        "gptoss verify --help": lambda: run([*gptoss, "verify", "--help"]),
        "gptoss verify TINY": lambda: run([*gptoss, "verify", str(tiny)]),
        "gptoss verify --json TINY": lambda: run([*gptoss, "verify", "--json", str(tiny)]),
    }, runs)
    base = results["python -c pass"]
    print(f"== start-up, median of {runs} runs ({os.cpu_count()} cores; {' '.join(gptoss)})")
    for name, t in results.items():
        extra = "" if name == "python -c pass" else f"   (+{(t - base) * 1000:6.1f} ms over python -c pass)"
        print(f"  {name:26s} {t * 1000:7.1f} ms{extra}")
    worst = max(results["gptoss verify --help"], results["gptoss verify TINY"])
    verdict = "met" if worst <= 0.150 else "NOT met"
    print(f"  gptoss verify start-up: {worst * 1000:.0f} ms (target <= 150 ms: {verdict})")


def _tiny_dest(dest: Path) -> Path:
    """A lock with one 4 KiB file (make_dest writes MB-sized files)."""
    from gptoss_cli.lockfile import Lock, LockedFile, ModelPin, write_lock
    from gptoss_cli.verify import hash_file

    model = dest / "model"
    model.mkdir(parents=True)
    path = model / "config.json"
    path.write_bytes(os.urandom(4096))
    sha, _, _ = hash_file(path)
    write_lock(dest, Lock(code=None, model=ModelPin("hf", "bench/tiny", "0" * 40, "https://huggingface.co"),
                          files=(LockedFile(path.name, path.stat().st_size, sha, "lfs"),)))
    return dest


def throughput(root: Path, files: int, size_mb: int, repeat: int) -> None:
    bench = _bench_verify()
    dest, paths = bench.make_dest(root / f"n{files}", files, size_mb)
    for p in paths:  # warm the page cache
        with open(p, "rb") as fh:
            while fh.read(1 << 24):
                pass
    names = [str(p) for p in paths]
    gptoss = gptoss_command()
    results = medians({
        "openssl dgst -sha256": lambda: run(["openssl", "dgst", "-sha256", *names]),
        "gptoss verify (process)": lambda: run([*gptoss, "verify", str(dest)]),
        "verify_lock() (core)": lambda: verify_lock(dest),
    }, repeat)
    total_mb = files * size_mb
    print(f"\n== {files} file(s) x {size_mb} MB = {total_mb} MB, {os.cpu_count()} cores, median of {repeat}")
    for name, t in results.items():
        print(f"  {name:26s} {t:7.3f} s  {total_mb / t:8.1f} MB/s")
    peer = results["openssl dgst -sha256"]
    cli, core = results["gptoss verify (process)"], results["verify_lock() (core)"]
    goal = " (goal >= 1.70)" if files >= 2 else ""
    print(f"  gptoss verify process vs one-core openssl: {peer / cli:5.2f}x{goal}")
    print(f"  verify_lock() core    vs one-core openssl: {peer / core:5.2f}x   "
          f"(process overhead {max(cli - core, 0) * 1000:.0f} ms)")
    shutil.rmtree(dest)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="start-up runs per command")
    parser.add_argument("--size-mb", type=int, default=1024, help="size of each big file")
    parser.add_argument("--files", type=int, default=2, help="big file count")
    parser.add_argument("--repeat", type=int, default=3, help="runs per tool on the big files")
    parser.add_argument("--no-big", action="store_true", help="measure start-up only")
    parser.add_argument("--dir", type=Path, default=None, help="scratch folder (default: a temp dir)")
    args = parser.parse_args()
    compileall.compile_dir(str(ROOT / "gptoss_cli"), quiet=1)
    root = Path(tempfile.mkdtemp(prefix="gptoss-bench-verify-cli-", dir=args.dir))
    try:
        startup(root, args.runs)
        if not args.no_big:
            throughput(root, args.files, args.size_mb, args.repeat)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
