"""Regenerate the configuration table in README.md from config.FIELDS; ``--check`` fails when it is stale."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gptoss_cli.config import FIELDS  # noqa: E402

START, END = "<!-- config-table:start -->", "<!-- config-table:end -->"


SECTION_COMMANDS = {"fetch": "fetch", "verify": "verify", "audit": "audit", "serve": "serve", "dify": "dify-register"}


def _command_params() -> dict[str, dict[str, list[str]]]:
    """{command name: {parameter name: [option strings]}} read from the real Typer app."""
    import typer.main

    from gptoss_cli.cli import app

    group = typer.main.get_command(app)
    return {
        name: {p.name: [o for o in (*p.opts, *getattr(p, "secondary_opts", ())) if o.startswith("-")]
               for p in cmd.params}
        for name, cmd in group.commands.items()
    }


def _flag(key: str, params: dict[str, dict[str, list[str]]]) -> str:
    """The command and option that set ``key``, found by parameter name in the real app; "" when none does."""
    if "." not in key:
        return ""
    section, suffix = key.split(".", 1)
    command = SECTION_COMMANDS.get(section)
    options = params.get(command or "", {})
    for name in (suffix, f"{section}_{suffix}", suffix.rstrip("s")):
        if options.get(name):
            return f"`{command} " + " / ".join(options[name]) + "`"
    return ""


def table() -> str:
    params = _command_params()
    rows = ["| file key | flag | environment | default | meaning |", "|---|---|---|---|---|"]
    for f in FIELDS:
        default = "" if f.default in (None, [], "") else f"`{f.default}`"
        env = ", ".join(f"`{e}`" for e in f.env_names)
        secret = " (secret: never printed)" if f.secret else ""
        rows.append(f"| `{f.key}` | {_flag(f.key, params)} | {env} | {default} | {f.help}{secret} |")
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
