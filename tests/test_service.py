"""``gptoss service unit``: the unit text, checked by the real ``systemd-analyze verify`` (Debian's systemd)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gptoss_cli.cli import app
from gptoss_cli.service import UnitSpec, exec_quote, render_unit

runner = CliRunner()
GPTOSS = Path(sys.executable).parent / "gptoss"
ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze not installed (Debian package systemd)")


def _lines(unit: str) -> dict[str, list[str]]:
    keys: dict[str, list[str]] = {}
    for line in unit.splitlines():
        if "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            keys.setdefault(key, []).append(value)
    return keys


def _analyze(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([ANALYZE, "verify", str(path)], capture_output=True, text=True, timeout=60)


def test_unit_has_restart_env_file_and_hardening(tmp_path: Path) -> None:
    res = runner.invoke(app, ["service", "unit", "--dest", "/srv/gpt-oss", "--port", "8001",
                              "--env-file", "/etc/gptoss/key.env", "--executable", str(GPTOSS)])
    assert res.exit_code == 0, res.output
    keys = _lines(res.stdout)
    assert keys["Restart"] == ["on-failure"]
    assert keys["EnvironmentFile"] == ["/etc/gptoss/key.env"]
    assert keys["NoNewPrivileges"] == ["yes"] and keys["ProtectSystem"] == ["strict"] and keys["PrivateTmp"] == ["yes"]
    assert keys["ReadOnlyPaths"] == ["/srv/gpt-oss"]
    assert keys["User"] == ["gptoss"] and keys["StateDirectory"] == ["gptoss"]
    assert keys["ExecStart"] == [f"{GPTOSS} serve /srv/gpt-oss/model --host 127.0.0.1 --port 8001"]
    assert "GPTOSS_API_KEY=" not in res.stdout.replace("GPTOSS_API_KEY=...", "")  # the key is never in the unit
    assert "key.env does not exist" in res.stderr


@needs_analyze
def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    unit_dir = tmp_path / "units"
    res = runner.invoke(app, ["--json", "service", "unit", "--dest", str(tmp_path / "gpt-oss"), "--install",
                              "--unit-dir", str(unit_dir), "--name", "gptoss-test", "--executable", str(GPTOSS),
                              "--serve-arg=--device", "--serve-arg=cpu", "--host", "0.0.0.0"])
    assert res.exit_code == 0, res.output
    path = unit_dir / "gptoss-test.service"
    assert json.loads(res.stdout)["path"] == str(path) and (path.stat().st_mode & 0o777) == 0o644
    assert "--device cpu" in path.read_text() and "--host 0.0.0.0" in path.read_text()
    done = _analyze(path)
    assert done.returncode == 0 and done.stdout + done.stderr == "", done.stdout + done.stderr


@needs_analyze
def test_systemd_analyze_catches_a_broken_unit(tmp_path: Path) -> None:
    """The check above can fail: the same tool flags a misspelt setting and a missing executable."""
    text = render_unit(UnitSpec(executable=GPTOSS, dest=Path("/srv/gpt-oss")))
    bad = tmp_path / "bad.service"
    bad.write_text(text.replace("ProtectSystem=strict", "ProtectSystem=strikt"))
    assert "strikt" in _analyze(bad).stderr
    gone = tmp_path / "gone.service"
    gone.write_text(render_unit(UnitSpec(executable=tmp_path / "no-gptoss", dest=Path("/srv/gpt-oss"))))
    done = _analyze(gone)
    assert done.returncode != 0 and "no-gptoss" in done.stderr


def test_exec_quoting_and_refusals(tmp_path: Path) -> None:
    assert exec_quote("plain-arg") == "plain-arg"
    assert exec_quote("50%") == '"50%%"' and exec_quote("$HOME") == '"$$HOME"'
    assert exec_quote('a "b"') == '"a \\"b\\""'
    for args, needle in ((["--user", "root"], "unprivileged"), (["--name", "bad name"], "--name"),
                         (["--dest", str(tmp_path / "with space")], "without spaces"),
                         (["--env-file", "relative.env"], "absolute")):
        res = runner.invoke(app, ["service", "unit", "--executable", str(GPTOSS), *args])
        assert res.exit_code == 2 and needle in res.stderr, (args, res.output)
