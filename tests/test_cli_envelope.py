"""One --json envelope for every command (success, failure, usage error; --json before or after the command), and
Click's usage errors as one ``gptoss: error:`` line with the right suggestion."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from gptoss_cli.cli import app
from tests.dify_fake import FakeDify, StubOpenAI
from tests.hub_fixtures import FakeHub, fake_hub  # noqa: F401 - fixture
from tests.osv_fixtures import FakeOsv, closed_port_url, fake_osv  # noqa: F401 - fixture
from tests.test_cli_output import make_dest

runner = CliRunner()
COMMANDS = [["doctor"], ["config", "show"], ["fetch"], ["verify"], ["audit"], ["serve"], ["dify-register"]]


def envelope(result: Any, schema: str, exit_code: int) -> dict[str, Any]:
    """The one JSON document on stdout, with the envelope's keys checked."""
    assert result.exit_code == exit_code, result.output
    doc = json.loads(result.stdout)
    assert doc["schema"] == schema and doc["exit_code"] == exit_code and doc["ok"] is (exit_code == 0)
    if exit_code == 0:
        assert "error" not in doc
    else:  # the same error as the one line on stderr
        assert set(doc["error"]) == {"type", "message", "hint"}
        last = result.stderr.strip().splitlines()[-1]
        assert last.startswith("gptoss: error: ") and doc["error"]["message"] in last
    return doc


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
@pytest.mark.parametrize("where", ["before", "after"])
def test_usage_error_is_one_line_and_one_envelope(command: list[str], where: str) -> None:
    args = ["--json", *command, "--bogus"] if where == "before" else [*command, "--json", "-q", "--no-truncate",
                                                                         "--bogus"]
    result = runner.invoke(app, args)
    name = "-".join(command)
    doc = envelope(result, f"gptoss.{name}/1", 2)
    path = "gptoss " + " ".join(command)
    assert doc["error"] == {"type": "UsageError", "message": f"no such option --bogus for '{path}'",
                            "hint": f"see '{path} --help'"}
    assert result.stderr == f"gptoss: error: no such option --bogus for '{path}'; see '{path} --help'\n"


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_takes_the_output_options(command: list[str]) -> None:
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0
    for flag in ("--json", "-q, --quiet", "-v, --verbose", "--no-truncate"):
        assert flag in result.stdout, (command, flag)


@pytest.mark.parametrize(("args", "line"), [
    (["fetch", "--bogus"], "no such option --bogus for 'gptoss fetch'; see 'gptoss fetch --help'"),
    (["fetch", "--dry"], "no such option --dry for 'gptoss fetch' (did you mean --dry-run?); see 'gptoss fetch --help'"),
    (["fetch", "--no-weight"], "no such option --no-weight for 'gptoss fetch' (did you mean --no-weights?); "
                               "see 'gptoss fetch --help'"),
    (["serve", "--jsn"], "no such option --jsn for 'gptoss serve' (did you mean --json?); see 'gptoss serve --help'"),
    (["--dry-run", "fetch"], "no such option --dry-run for 'gptoss' (it is an option of 'gptoss fetch': give it "
                             "after the command); see 'gptoss --help'"),
    (["fetch", "--config", "x.toml"], "no such option --config for 'gptoss fetch' (it is an option of 'gptoss': "
                                      "give it before the command); see 'gptoss fetch --help'"),
    (["fecth"], "no such command 'fecth' for 'gptoss' (did you mean 'fetch'?); see 'gptoss --help'"),
    (["config", "shw"], "no such command 'shw' for 'gptoss config' (did you mean 'show'?); "
                        "see 'gptoss config --help'"),
    (["audit", "--format"], "option '--format' requires an argument; see 'gptoss audit --help'"),
    (["verify", "a", "b"], "got unexpected extra argument(s) (b); see 'gptoss verify --help'"),
])
def test_click_usage_errors_are_one_line_with_the_right_suggestion(args: list[str], line: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert result.stderr == f"gptoss: error: {line}\n" and result.stdout == ""


def test_bad_option_value_names_the_option_on_one_line() -> None:
    result = runner.invoke(app, ["verify", "--jobs", "many"])
    assert result.exit_code == 2 and result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith("gptoss: error: invalid value for --jobs/-j: ")
    assert line.endswith("; see 'gptoss verify --help'")


def test_real_process_usage_error_with_json() -> None:
    out = subprocess.run([sys.executable, "-m", "gptoss_cli", "fetch", "--bogus", "--json"], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 2
    assert out.stderr == "gptoss: error: no such option --bogus for 'gptoss fetch'; see 'gptoss fetch --help'\n"
    assert json.loads(out.stdout)["error"]["type"] == "UsageError"


def test_doctor_and_config_envelopes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ok = envelope(runner.invoke(app, ["doctor", "--json", "--dest", str(tmp_path)]), "gptoss.doctor/1", 0)
    assert ok["checks"]
    import gptoss_cli.doctor as doctor

    monkeypatch.setattr(doctor, "CORE_PACKAGES", (*doctor.CORE_PACKAGES, "gptoss-no-such-dist"))
    bad = envelope(runner.invoke(app, ["--json", "doctor", "--dest", str(tmp_path)]), "gptoss.doctor/1", 1)
    assert bad["error"]["type"] == "CheckFailed" and "gptoss-no-such-dist" in bad["error"]["message"]
    assert bad["checks"]  # the result is still there
    shown = envelope(runner.invoke(app, ["config", "show", "--json"]), "gptoss.config-show/1", 0)
    assert shown["settings"] and "files" in shown
    monkeypatch.chdir(tmp_path)
    (tmp_path / "gptoss.toml").write_text("[serve]\nport = [1\n")
    broken = envelope(runner.invoke(app, ["--json", "config", "show"]), "gptoss.config-show/1", 2)
    assert broken["error"]["type"] == "ConfigError" and "settings" not in broken


def test_verify_envelopes(tmp_path: Path) -> None:
    dest = make_dest(tmp_path / "d", {"config.json": b"{}", "a.safetensors": b"x" * 100})
    ok = envelope(runner.invoke(app, ["verify", str(dest), "--json"]), "gptoss.verify/1", 0)
    assert ok["counts"]["ok"] == 2
    (dest / "model" / "config.json").write_bytes(b"[]")
    bad = envelope(runner.invoke(app, ["--json", "verify", str(dest)]), "gptoss.verify/1", 1)
    assert bad["error"]["type"] == "CheckFailed" and bad["counts"]["mismatch"] == 1
    gone = envelope(runner.invoke(app, ["verify", str(tmp_path / "none"), "--json"]), "gptoss.verify/1", 3)
    assert "not found" in gone["error"]["message"] and "files" not in gone


def test_fetch_envelopes(tmp_path: Path, fake_hub: FakeHub) -> None:  # noqa: F811 - fixture
    ok = envelope(runner.invoke(app, ["fetch", "--json", "--no-code", "--endpoint", fake_hub.url, "--model",
                                      "org/tiny", "--dest", str(tmp_path / "d")]), "gptoss.fetch/1", 0)
    assert ok["model"]["files"] and ok["lock_path"]
    usage = envelope(runner.invoke(app, ["--json", "fetch", "--no-code", "--no-weights"]), "gptoss.fetch/1", 2)
    assert usage["error"]["type"] == "UsageError"
    down = envelope(runner.invoke(app, ["fetch", "--json", "--no-code", "--endpoint", closed_port_url(), "--dest",
                                        str(tmp_path / "e")]), "gptoss.fetch/1", 3)
    assert down["error"]["type"] == "NetworkError" and "model" not in down


def test_audit_envelope_with_findings(tmp_path: Path, fake_osv: FakeOsv) -> None:  # noqa: F811 - fixture
    req = tmp_path / "requirements.txt"
    req.write_text("demo-web==2.19.0\n")
    doc = envelope(runner.invoke(app, ["audit", "--json", "-r", str(req), "--osv-url", fake_osv.url]),
                   "gptoss.audit/1", 1)
    assert doc["error"]["type"] == "CheckFailed" and doc["outcome"] == "vulnerable" and doc["vulnerabilities"]


def test_dify_register_envelopes() -> None:
    missing = envelope(runner.invoke(app, ["--json", "dify-register"]), "gptoss.dify-register/1", 2)
    assert "--dify-url" in missing["error"]["message"]
    with FakeDify(version="1.13.3") as fake, StubOpenAI() as stub:
        result = runner.invoke(app, ["dify-register", "--json", "--dify-url", fake.url, "--email", fake.email,
                                     "--password-env", "PW", "--endpoint-url", stub.url], env={"PW": fake.password})
        doc = envelope(result, "gptoss.dify-register/1", 0)
    assert doc["action"] == "created" and fake.password not in result.stdout


def test_serve_json_is_json_lines_ready_then_exit(tmp_path: Path) -> None:
    failed = runner.invoke(app, ["serve", "--json", str(tmp_path / "none")])
    assert failed.exit_code == 2 and len(failed.stdout.splitlines()) == 1
    doc = json.loads(failed.stdout)
    assert doc["schema"] == "gptoss.serve/1" and doc["event"] == "exit" and doc["ok"] is False
    assert doc["error"]["type"] == "UsageError" and doc["exit_code"] == 2
    proc = subprocess.Popen([sys.executable, "-m", "gptoss_cli", "--json", "serve", "--port", "0", "--engine",
                             "upstream", "--upstream-url", closed_port_url() + "/v1"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ})
    try:
        assert proc.stdout is not None
        ready = json.loads(proc.stdout.readline())
        proc.send_signal(signal.SIGTERM)
        rest, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    assert ready["schema"] == "gptoss.serve/1" and ready["event"] == "ready" and ready["model"] == "gpt-oss-20b"
    assert ready["url"].startswith("http://127.0.0.1:") and ready["url"].endswith("/v1")
    assert ready["api_key_required"] is False
    assert [json.loads(line) for line in rest.splitlines()] == [
        {"schema": "gptoss.serve/1", "event": "exit", "ok": True, "exit_code": 0}]
    assert "gptoss: ready:" in err  # the human ready line stays on stderr


def test_error_type_is_a_class_of_the_documented_tree(tmp_path: Path) -> None:
    gone = envelope(runner.invoke(app, ["verify", str(tmp_path / "none"), "--json"]), "gptoss.verify/1", 3)
    assert gone["error"]["type"] == "CouldNotRun"  # a LockError, reported as its documented class
