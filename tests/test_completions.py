"""completions/ is generated from the app and must be current; completion itself answers with real commands."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

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


# -- option values, --show-completion SHELL, and the README's install lines ----------------------------------------

ENTRY = "import sys; sys.argv[0] = 'gptoss'; from gptoss_cli.cli import main; main()"
SCRIPTS = {"bash": "gptoss.bash", "zsh": "_gptoss", "fish": "gptoss.fish", "powershell": "gptoss.ps1"}


def _complete(env: dict[str, str]) -> list[str]:
    out = subprocess.run([sys.executable, "-c", ENTRY], env={**os.environ, **env}, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


_BATCH = """
import contextlib, io, json, os, sys
from gptoss_cli.cli import main
answers = []
for line in json.loads(sys.argv[1]):
    os.environ.update(_GPTOSS_COMPLETE="complete_bash", COMP_WORDS=line, COMP_CWORD=str(len(line.split(" ")) - 1))
    sys.argv, buf = ["gptoss"], io.StringIO()
    with contextlib.redirect_stdout(buf):
        try:
            main()
        except SystemExit:
            pass
    answers.append(buf.getvalue().split())
print(json.dumps(answers))
"""


def _bash(*lines: str) -> list[list[str]]:
    """What bash completion answers for each command line (the real entry point, one process for all lines)."""
    import json

    out = subprocess.run([sys.executable, "-c", _BATCH, json.dumps(lines)], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.splitlines()[-1])


VALUES = {
    "gptoss serve --engine ": ["transformers", "vllm", "upstream"],
    "gptoss serve --engine v": ["vllm"],
    "gptoss serve --dtype ": ["auto", "bfloat16", "float16", "float32"],
    "gptoss serve --device ": ["auto", "cpu", "cuda"],
    "gptoss serve --reasoning-effort ": ["low", "medium", "high"],
    "gptoss serve --log-format ": ["text", "json"],
    "gptoss serve --distributed-executor-backend ": ["mp", "ray", "uni", "external_launcher"],
    "gptoss fetch --source ": ["hf", "modelscope"],
    "gptoss audit --format ": ["table", "json", "cyclonedx", "sarif"],
    "gptoss audit -f c": ["cyclonedx"],
    "gptoss audit --service ": ["osv", "pypi"],
    "gptoss audit --fail-on ": ["any", "fixable"],
    "gptoss --show-completion ": ["bash", "zsh", "fish", "powershell", "pwsh"],
}


def test_bash_completion_offers_option_values():
    assert dict(zip(VALUES, _bash(*VALUES))) == VALUES


def test_offered_values_are_the_ones_the_commands_accept():
    from gptoss_cli.audit import FAIL_ON_CHOICES, FORMATS, SERVICE_CHOICES
    from gptoss_cli.serve.engines.build import ENGINES
    from gptoss_cli.serve.settings import EFFORTS
    from gptoss_cli.serve.engines.transformers.engine import resolve_dtype
    from gptoss_cli.serve.engines.vllm.backend import DTYPES as VLLM_DTYPES

    engines, efforts, formats, services, fail_on, dtypes = _bash(
        "gptoss serve --engine ", "gptoss serve --reasoning-effort ", "gptoss audit --format ",
        "gptoss audit --service ", "gptoss audit --fail-on ", "gptoss serve --dtype ")
    assert (engines, efforts, formats) == (list(ENGINES), list(EFFORTS), list(FORMATS))
    assert (services, fail_on) == (list(SERVICE_CHOICES), list(FAIL_ON_CHOICES))
    assert set(dtypes) == set(VLLM_DTYPES) and all(resolve_dtype(d, "cpu") for d in dtypes)


@pytest.mark.parametrize("shell", ["zsh", "fish"])
def test_zsh_and_fish_completion_offer_option_values(shell):
    env = {"_GPTOSS_COMPLETE": f"complete_{shell}", "_TYPER_COMPLETE_ARGS": "gptoss serve --engine "}
    if shell == "fish":
        env["_TYPER_COMPLETE_FISH_ACTION"] = "get-args"
    text = " ".join(_complete(env))
    assert all(v in text for v in ("transformers", "vllm", "upstream")), text


@pytest.mark.parametrize("shell", sorted(SCRIPTS))
def test_show_completion_takes_the_shell_by_name(shell):
    out = subprocess.run([sys.executable, "-c", ENTRY, "--show-completion", shell], capture_output=True, text=True,
                         timeout=60, env={**os.environ, "SHELL": "/bin/sh"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == (ROOT / "completions" / SCRIPTS[shell]).read_text().strip()


def test_show_completion_unknown_shell_is_a_usage_error():
    out = subprocess.run([sys.executable, "-c", ENTRY, "--show-completion", "tcsh"], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 2 and "tcsh" in out.stderr and out.stdout == ""


def _readme_completion_lines() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("### Shell completion", 1)[1]
    block = section.split("```bash", 1)[1].split("```", 1)[0]  # the first bash block of the section
    return [line for line in block.strip().splitlines() if line.strip() and not line.lstrip().startswith("#")]


def _path_with_gptoss(tmp_path: Path) -> str:
    """PATH where `gptoss` is this checkout's entry point: the venv's script, else a shim over ``-m gptoss_cli``."""
    script = Path(sys.executable).with_name("gptoss")
    if not script.is_file():
        bindir = tmp_path / "bin"
        bindir.mkdir()
        script = bindir / "gptoss"
        script.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m gptoss_cli "$@"\n')
        script.chmod(0o755)
    return f"{script.parent}:/usr/bin:/bin"


def test_readme_completion_lines_work_on_a_fresh_home(tmp_path):
    """Each README line, run literally by a shell with an empty HOME and no checkout in sight, installs the
    script for its shell; the bash one then really completes option values in bash."""
    lines = _readme_completion_lines()
    home, elsewhere = tmp_path / "home", tmp_path / "elsewhere"
    home.mkdir()
    elsewhere.mkdir()
    env = {"HOME": str(home), "PATH": _path_with_gptoss(tmp_path), "LANG": "C.UTF-8"}
    installed: dict[str, Path] = {}
    for line in lines:
        out = subprocess.run(["bash", "-c", line], cwd=elsewhere, env=env, capture_output=True, text=True,
                             timeout=60)
        assert out.returncode == 0, f"{line}\n{out.stderr}"
        shell, target = re.search(r"--show-completion (\w+) > (\S+)", line).groups()
        installed[shell] = Path(target.replace("~", str(home), 1))
    assert {"bash", "zsh", "fish"} <= set(installed), lines
    for shell, path in installed.items():
        assert path.read_text().strip() == (ROOT / "completions" / SCRIPTS[shell]).read_text().strip(), shell
    probe = (f'source "{installed["bash"]}"; COMP_WORDS=(gptoss serve --engine ""); COMP_CWORD=3; '
             '_gptoss_completion gptoss; printf "%s\\n" "${COMPREPLY[@]}"')
    out = subprocess.run(["bash", "-c", probe], cwd=elsewhere, env=env, capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["transformers", "vllm", "upstream"], out.stderr
