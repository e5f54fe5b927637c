#!/usr/bin/env python
"""Rebuild the demo model that ships in gptoss_cli/demo/ (model/ + gptoss.lock.json). Developers only.

    .venv/bin/python scripts/build_demo_model.py            # train (a few minutes on 2 cores), replace, print hashes
    .venv/bin/python scripts/build_demo_model.py --check    # exit 1 if the shipped files or fingerprint are stale

Run it when tests/test_demo_model.py says the harmony renderer's fingerprint no longer matches, then commit the
new files. The result depends on this machine's CPU (float rounding), which is why it is shipped, not rebuilt.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=None, help="training steps (default: train.TRAIN_STEPS)")
    parser.add_argument("--check", action="store_true", help="only check the shipped files; build nothing")
    args = parser.parse_args()

    from gptoss_cli.demo import DEMO_CURRENT_DATE, demo_info, demo_lock_path, demo_root
    from gptoss_cli.demo.corpus import prompt_fingerprint
    from gptoss_cli.verify import verify_lock

    if args.check:
        result = verify_lock(demo_lock_path())
        current = prompt_fingerprint(DEMO_CURRENT_DATE)
        shipped = demo_info().get("prompt_fingerprint")
        print(f"files: {result.summary()}; fingerprint shipped {shipped}, renderer now {current}")
        return 0 if result.ok and shipped == current else 1

    from gptoss_cli.demo.train import TRAIN_STEPS, build_shipped

    lock = build_shipped(demo_root(), seed=args.seed, steps=args.steps or TRAIN_STEPS,
                         progress=lambda msg: print(msg, file=sys.stderr))
    for entry in json.loads(lock.read_text())["files"]:
        print(f"{entry['sha256']}  {entry['size']:>9}  {entry['path']}")
    print(f"wrote {lock}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
