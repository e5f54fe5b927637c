"""Missing extras: one line on stderr, exit 3, the exact install command, before any other work or output.

A module is made missing the way Python itself knows: ``sys.modules[name] = None`` makes both ``import name`` and
``importlib.util.find_spec(name)`` report it absent. ``tests/test_packaging.py`` checks the same in a real venv that
holds the built wheel without extras.
"""

from __future__ import annotations

import json
import re
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from typer.testing import CliRunner

from gptoss_cli import extras
from gptoss_cli.cli import app

ROOT = Path(__file__).resolve().parent.parent
INSTALL = "pip install 'gptoss-cli[serve]'"
runner = CliRunner()


@pytest.fixture
def without(monkeypatch):
    def block(*names: str) -> None:
        for name in names:
            monkeypatch.setitem(sys.modules, name, None)

    return block


def _one_error_line(result) -> str:
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("gptoss: error: "), lines[0]
    assert "internal error" not in lines[0] and "Traceback" not in result.stderr
    return lines[0]


def test_serve_demo_without_torch_says_what_to_install_and_builds_nothing(without, isolated_env):
    without("torch")
    result = runner.invoke(app, ["serve", "--demo"])
    assert result.exit_code == 3
    line = _one_error_line(result)
    assert INSTALL in line and "torch" in line
    assert f"pip install torch=={extras.TORCH_VERSION}" in line  # torch first: an unpinned one pulls a CUDA build
    assert "building" not in result.stderr and not (isolated_env / "gptoss-home" / "demo").exists()


def test_serve_model_dir_without_transformers_fails_before_verifying(without, tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "gptoss.lock.json").write_text("{not json")  # would be read first if the check came later
    without("transformers")
    result = runner.invoke(app, ["serve", str(tmp_path / "model")])
    assert result.exit_code == 3
    line = _one_error_line(result)
    assert line.endswith(f"({INSTALL})") and "transformers" in line and "torch==" not in line


def test_serve_upstream_without_uvicorn(without):
    without("uvicorn")
    result = runner.invoke(app, ["serve", "--engine", "upstream", "--upstream-url", "http://127.0.0.1:9/v1"])
    assert result.exit_code == 3
    line = _one_error_line(result)
    assert "uvicorn" in line and INSTALL in line and "starting" not in result.stderr


def test_serve_upstream_needs_no_torch(without):
    """The request-level engines run no model in this process: torch is not required for them."""
    without("torch", "transformers")
    assert extras.missing(extras.serve_modules("upstream")) == []
    assert extras.missing(extras.serve_modules("vllm")) == []
    assert "torch" in extras.serve_modules("transformers")


def test_vllm_front_without_fastapi(without, tmp_path):
    without("fastapi")
    result = runner.invoke(app, ["serve", "--engine", "vllm", str(tmp_path)])
    assert result.exit_code == 3
    assert "fastapi" in _one_error_line(result)


def test_doctor_table_and_json_say_the_same_install_command(monkeypatch, tmp_path):
    import gptoss_cli.doctor as doctor

    monkeypatch.setattr(doctor, "SERVE_PACKAGES", (*doctor.SERVE_PACKAGES, "gptoss-no-such-dist"))
    doc = json.loads(runner.invoke(app, ["doctor", "--json", "--dest", str(tmp_path)]).stdout)
    row = next(c for c in doc["checks"] if c["name"] == "package gptoss-no-such-dist")
    assert INSTALL in row["detail"] and row["status"] == "warn"
    table = runner.invoke(app, ["doctor", "--dest", str(tmp_path)], env={"COLUMNS": "400"})
    assert table.exit_code == 0
    assert row["detail"] in table.stdout  # rich markup must not eat "[serve]"


def test_doctor_torch_row_names_the_command(without, tmp_path):
    without("torch")
    doc = json.loads(runner.invoke(app, ["doctor", "--json", "--dest", str(tmp_path)]).stdout)
    row = next(c for c in doc["checks"] if c["name"] == "torch/cuda")
    assert INSTALL in row["detail"] and f"torch=={extras.TORCH_VERSION}" in row["detail"]
    table = runner.invoke(app, ["doctor", "--dest", str(tmp_path)], env={"COLUMNS": "400"})
    assert row["detail"] in table.stdout


def test_every_checked_module_comes_with_the_serve_extra():
    """What ``require`` checks is what ``pip install 'gptoss-cli[serve]'`` installs (import name -> distribution)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    serve = {Requirement(r).name.lower() for r in project["optional-dependencies"]["serve"]}
    assert set(extras.SERVE_DISTRIBUTIONS.values()) <= serve
    assert set(extras.SERVE_DISTRIBUTIONS) == set(extras.serve_modules("transformers"))


def test_torch_pin_in_the_hint_is_the_one_setup_installs():
    setup = (ROOT / "scripts" / "setup.sh").read_text()
    assert re.search(r"GPTOSS_TORCH_VERSION:-([\d.]+)", setup).group(1) == extras.TORCH_VERSION
