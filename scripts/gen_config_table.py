"""Regenerate the configuration table in README.md from config.FIELDS; ``--check`` fails when it is stale."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gptoss_cli.config import FIELDS  # noqa: E402

START, END = "<!-- config-table:start -->", "<!-- config-table:end -->"


def _flag(key: str) -> str:
    name = key.split(".", 1)[-1].replace("_", "-")
    return f"`--{name}`"


def table() -> str:
    rows = ["| file key | flag | environment | default | meaning |", "|---|---|---|---|---|"]
    for f in FIELDS:
        default = "" if f.default in (None, [], "") else f"`{f.default}`"
        env = ", ".join(f"`{e}`" for e in f.env_names)
        secret = " (secret: never printed)" if f.secret else ""
        rows.append(f"| `{f.key}` | {_flag(f.key)} | {env} | {default} | {f.help}{secret} |")
    return "\n".join(rows)


def render(readme: str) -> str:
    head, rest = readme.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{table()}\n{END}{tail}"


def main(argv: list[str]) -> int:
    path = ROOT / "README.md"
    text = path.read_text(encoding="utf-8")
    new = render(text)
    if "--check" in argv:
        if new != text:
            print("README config table is stale: run python scripts/gen_config_table.py", file=sys.stderr)
            return 1
        return 0
    path.write_text(new, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
