"""Start-up time of `gptoss --help` against `hf --help` and `python -c pass`, measured in the same run.

    python bench/startup.py [--runs 15]

Prints the median of each and the ratio gptoss / hf (target <= 0.4). `gptoss --help` lists every command, so it
imports and builds all of them; `gptoss verify --help` shows what one command costs now that commands are
imported only when used (bench/verify_cli.py measures a whole verify run too).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path


def _time(cmd: list[str], runs: int) -> float:
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    bindir = Path(sys.executable).parent
    gptoss = shutil.which("gptoss", path=str(bindir)) or shutil.which("gptoss")
    hf = shutil.which("hf", path=str(bindir)) or shutil.which("hf")
    if not gptoss or not hf:
        print("need both `gptoss` and `hf` (huggingface_hub) on PATH", file=sys.stderr)
        return 2
    cmds = {"python -c pass": [sys.executable, "-c", "pass"], "hf --help": [hf, "--help"],
            "gptoss --help": [gptoss, "--help"], "gptoss --version": [gptoss, "--version"],
            "gptoss verify --help": [gptoss, "verify", "--help"]}
    for cmd in cmds.values():  # warm the page cache once
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    medians = {name: _time(cmd, args.runs) for name, cmd in cmds.items()}
    for name, value in medians.items():
        print(f"{name:22s} median {value * 1000:7.1f} ms  ({args.runs} runs)")
    ratio = medians["gptoss --help"] / medians["hf --help"]
    base = medians["python -c pass"]
    net = (medians["gptoss --help"] - base) / max(medians["hf --help"] - base, 1e-9)
    print(f"ratio gptoss/hf --help: {ratio:.2f} (target <= 0.40); minus interpreter start: {net:.2f}")
    one = medians["gptoss verify --help"] / medians["hf --help"]
    print(f"ratio gptoss verify --help / hf --help: {one:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
