"""The CLI frame: help, version, --json, exit codes, error boundary, config show, doctor, fast start."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import typer
from typer.testing import CliRunner

from gptoss_cli import __version__, errors
from gptoss_cli.cli import app
from gptoss_cli.cli._errors import boundary

runner = CliRunner()


def test_help_lists_commands():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "doctor" in result.output and "config" in result.output


def test_no_args_shows_help_with_usage_exit():
    result = runner.invoke(app, [])
    assert result.exit_code == 2
    assert "Usage" in result.output


def test_version_plain_and_json():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout.strip() == f"gptoss {__version__}"


def test_version_json_subprocess():
    out = subprocess.run([sys.executable, "-m", "gptoss_cli", "--json", "--version"], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0
    assert json.loads(out.stdout) == {"name": "gptoss-cli", "version": __version__}


def test_unknown_option_is_usage_error():
    result = runner.invoke(app, ["doctor", "--no-such-flag"])
    assert result.exit_code == 2


def _error_app(exc: BaseException) -> typer.Typer:
    demo = typer.Typer()

    @demo.command()
    @boundary
    def boom() -> None:
        raise exc

    @demo.command()
    def other() -> None:  # a second command so "boom" is addressed by name
        pass

    return demo


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (errors.CheckFailed("2 files differ"), 1),
        (errors.UsageError("--lock and --from-dir conflict"), 2),
        (errors.ConfigError("gptoss.toml: key serve.port: expected int"), 2),
        (errors.CouldNotRun("mirror unreachable"), 3),
        (errors.NetworkError("connection refused"), 3),
        (errors.IntegrityError("sha256 mismatch"), 3),
        (errors.GitError("clone failed"), 3),
        (errors.DiskSpaceError("/data", 100, 10), 3),
        (errors.RemoteServiceError("Dify said no"), 3),
        (errors.Interrupted("stopped"), 130),
        (KeyboardInterrupt(), 130),
        (RuntimeError("unexpected\nthing"), 3),
    ],
)
def test_error_boundary_exit_codes(exc, code):
    result = runner.invoke(_error_app(exc), ["boom"])
    assert result.exit_code == code
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_debug_env_shows_traceback(monkeypatch):
    monkeypatch.setenv("GPTOSS_DEBUG", "1")
    result = runner.invoke(_error_app(errors.CouldNotRun("network down")), ["boom"])
    assert result.exit_code == 3
    assert "Traceback" in result.stderr and "network down" in result.stderr


def test_error_message_has_hint_on_one_line():
    result = runner.invoke(_error_app(errors.NetworkError("mirror unreachable", hint="check --endpoint")), ["boom"])
    assert result.stderr.strip() == "gptoss: error: mirror unreachable (check --endpoint)"


def test_malformed_config_file_exit_2(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "gptoss.toml").write_text("[serve]\nport = [1\n")
    result = runner.invoke(app, ["config", "show"])
    assert result.exit_code == 2
    assert "gptoss.toml" in result.stderr and "Traceback" not in result.stderr


def test_config_show_sources_and_masking(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "gptoss.toml").write_text("[serve]\nport = 9001\n")
    monkeypatch.setenv("GPTOSS_API_KEY", "sk-very-secret-value")
    monkeypatch.setenv("HF_TOKEN", "hf_secret_token_value")
    for args in (["config", "show", "--json"], ["--json", "config", "show"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        doc = json.loads(result.stdout)
        rows = {r["key"]: r for r in doc["settings"]}
        assert rows["serve.port"]["value"] == 9001 and rows["serve.port"]["source"].startswith("file:")
        assert rows["serve.api_key"]["value"] == "********"
        assert rows["serve.api_key"]["source"] == "env:GPTOSS_API_KEY"
        assert rows["fetch.token"]["source"] == "env:HF_TOKEN"
        assert rows["serve.host"]["source"] == "default"
    human = runner.invoke(app, ["config", "show"], env={"COLUMNS": "200"})
    assert human.exit_code == 0
    for out in (human.stdout, human.stderr, result.stdout):
        assert "sk-very-secret-value" not in out and "hf_secret_token_value" not in out
    assert "serve.port" in human.stdout and "9001" in human.stdout


def test_global_config_flag(tmp_path):
    cfg = tmp_path / "alt.toml"
    cfg.write_text("[serve]\nport = 9100\n")
    result = runner.invoke(app, ["--config", str(cfg), "config", "show", "--json"])
    rows = {r["key"]: r for r in json.loads(result.stdout)["settings"]}
    assert rows["serve.port"]["value"] == 9100
    missing = runner.invoke(app, ["--config", str(tmp_path / "nope.toml"), "config", "show"])
    assert missing.exit_code == 2 and "not found" in missing.stderr


def test_doctor_on_this_machine(tmp_path):
    result = runner.invoke(app, ["doctor", "--json", "--dest", str(tmp_path / "x")])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    names = {c["name"] for c in doc["checks"]}
    assert {"python", "git", "disk", "torch/cuda", "network env", "package typer"} <= names
    assert doc["ok"] is True
    human = runner.invoke(app, ["doctor", "--dest", str(tmp_path)], env={"COLUMNS": "200"})
    assert human.exit_code == 0 and "python" in human.stdout


def test_doctor_says_which_mxfp4_path_serve_would_take(tmp_path):
    pytest.importorskip("torch")
    import torch

    result = runner.invoke(app, ["doctor", "--json", "--dest", str(tmp_path / "x")])
    check = next(c for c in json.loads(result.stdout)["checks"] if c["name"] == "mxfp4 path")
    if not torch.cuda.is_available():
        assert check["detail"].startswith("packed experts (pure torch) or dequantised")
        assert "native MXFP4 kernels need a CUDA device" in check["detail"]


def test_doctor_missing_required_piece_exits_1(monkeypatch, tmp_path):
    import gptoss_cli.doctor as doctor

    monkeypatch.setattr(doctor, "CORE_PACKAGES", (*doctor.CORE_PACKAGES, "gptoss-no-such-dist"))
    result = runner.invoke(app, ["--json", "doctor", "--dest", str(tmp_path)])
    assert result.exit_code == 1
    doc = json.loads(result.stdout)
    assert doc["ok"] is False
    failed = [c for c in doc["checks"] if c["status"] == "fail"]
    assert failed and failed[0]["name"] == "package gptoss-no-such-dist"


def test_doctor_reports_proxy_names_not_values(monkeypatch, tmp_path):
    monkeypatch.setenv("HTTPS_PROXY", "http://user:proxy-password@10.0.0.1:3128")
    monkeypatch.setenv("HF_ENDPOINT", "https://hf-mirror.example")
    result = runner.invoke(app, ["doctor", "--json", "--dest", str(tmp_path)])
    assert "proxy-password" not in result.stdout
    net = next(c for c in json.loads(result.stdout)["checks"] if c["name"] == "network env")
    assert "HTTPS_PROXY" in net["detail"] and "HF_ENDPOINT" in net["detail"]


# pydantic is not listed: Typer itself imports it to render a command's --help.
HEAVY = ("torch", "transformers", "fastapi", "huggingface_hub", "git", "uvicorn", "starlette")


@pytest.mark.parametrize("argv", [["--help"], ["--version"]] + [[c, "--help"] for c in ("doctor", "config")])
def test_fast_start_imports_nothing_heavy(argv):
    code = (
        "import sys\n"
        "from gptoss_cli.cli import app\n"
        "try:\n"
        f"    app({argv!r}, prog_name='gptoss')\n"
        "except SystemExit:\n"
        "    pass\n"
        f"heavy = sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})\n"
        "print('HEAVY=' + ','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "COLUMNS": "120"})
    line = [ln for ln in out.stdout.splitlines() if ln.startswith("HEAVY=")][-1]
    assert line == "HEAVY=", line


def test_every_registered_command_help_is_light():
    """Every command's --help (including ones added later) must stay free of heavy imports."""
    names = list(typer.main.get_command(app).commands)  # the names only: commands are built when asked for
    assert "doctor" in names
    code = (
        "import sys\nfrom gptoss_cli.cli import app\n"
        f"for name in {names!r}:\n"
        "    try:\n"
        "        app([name, '--help'], prog_name='gptoss')\n"
        "    except SystemExit:\n"
        "        pass\n"
        f"heavy = sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})\n"
        "print('HEAVY=' + ','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip().splitlines()[-1] == "HEAVY=", out.stdout[-2000:]


def test_no_color_when_not_tty_or_no_color(monkeypatch, tmp_path):
    monkeypatch.setenv("NO_COLOR", "1")
    result = runner.invoke(app, ["doctor", "--dest", str(tmp_path)])
    assert "\x1b[" not in result.stdout
    out = subprocess.run([sys.executable, "-m", "gptoss_cli", "doctor", "--dest", str(tmp_path)],
                         capture_output=True, text=True, timeout=120)
    assert "\x1b[" not in out.stdout and out.returncode == 0
