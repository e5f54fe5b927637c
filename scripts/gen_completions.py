"""Regenerate completions/ from the app itself (Typer prints them); ``--check`` fails when they are stale.

    python scripts/gen_completions.py          # rewrite completions/*
    python scripts/gen_completions.py --check  # exit 1 if a checked-in file differs
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHELLS = {"bash": "gptoss.bash", "zsh": "_gptoss", "fish": "gptoss.fish", "powershell": "gptoss.ps1"}


def generate(shell: str) -> str:
    env = {**os.environ, "_GPTOSS_COMPLETE": f"source_{shell}"}
    code = "import sys; sys.argv[0] = 'gptoss'; from gptoss_cli.cli import main; main()"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    if out.returncode != 0 or not out.stdout.strip():
        raise SystemExit(f"could not generate {shell} completion: {out.stderr.strip()}")
    return out.stdout.strip() + "\n"


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = []
    for shell, name in SHELLS.items():
        path = ROOT / "completions" / name
        text = generate(shell)
        if check:
            if not path.is_file() or path.read_text() != text:
                stale.append(str(path.relative_to(ROOT)))
        else:
            path.parent.mkdir(exist_ok=True)
            path.write_text(text)
    if stale:
        print("stale completions (run python scripts/gen_completions.py): " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
