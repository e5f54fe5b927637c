"""completions/ is generated from the app and must be current; completion itself answers with real commands."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_checked_in_completions_are_current():
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_completions.py"), "--check"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr


def test_bash_completion_answers_with_commands():
    env = {**os.environ, "_GPTOSS_COMPLETE": "complete_bash", "COMP_WORDS": "gptoss do", "COMP_CWORD": "1"}
    code = "import sys; sys.argv[0] = 'gptoss'; from gptoss_cli.cli import main; main()"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert "doctor" in out.stdout.split()


def test_readme_config_table_is_current():
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_config_table.py"), "--check"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr


def test_readme_opens_with_the_two_commands_ci_runs():
    readme = (ROOT / "README.md").read_text()
    block = readme.split("```bash", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in block.strip().splitlines()]
    assert commands == ["bash scripts/demo.sh", "bash scripts/test.sh"]
    assert "bash scripts/test.sh" in (ROOT / ".ci" / "run").read_text()
