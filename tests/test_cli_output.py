"""Output for terminals and CI: throttled plain progress off a terminal, -q/-v, no truncation when piped,
--no-truncate, HF_HUB_DISABLE_PROGRESS_BARS, and status lines said once in a terminal (dify-register)."""

from __future__ import annotations

import hashlib
import io
import itertools
import os
import re
import sys
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from gptoss_cli.cli import _progress, app
from gptoss_cli.cli._output import Output
from gptoss_cli.cli._progress import PlainProgress, progress_mode
from gptoss_cli.lockfile import Lock, LockedFile, ModelPin, write_lock
from tests.dify_fake import FakeDify, StubOpenAI
from tests.hub_fixtures import FakeHub, FakeRepo, random_bytes
from tests.osv_fixtures import FakeOsv, fake_osv  # noqa: F401 - fixture
from tests.term import run_in_terminal, run_raw_in_terminal

runner = CliRunner()
SHARD = "model-00000-of-00001.safetensors"
LONG = "model-00001-of-00002.safetensors-with-a-name-long-enough-to-be-cut-in-a-narrow-table"


class FakeClock:
    """Each call returns the next whole second: lines depend on how often the clock is read, never on timing."""

    def __init__(self) -> None:
        self.calls = itertools.count()
        self.used = 0

    def __call__(self) -> float:
        self.used = next(self.calls) + 1
        return float(self.used - 1)


def test_plain_progress_one_line_per_interval_then_a_closing_line(monkeypatch: pytest.MonkeyPatch) -> None:
    times = iter([0.0, 1.0, 4.9, 5.0, 6.0, 9.0, 10.5, 12.0, 12.0])
    monkeypatch.setattr(_progress, "clock", lambda: next(times))
    lines: list[str] = []
    task = PlainProgress("weights", lines.append, interval=5.0)
    gb = 10**9
    for done in (0, 1 * gb, 2 * gb, 3 * gb, 4 * gb, 5 * gb, 6 * gb, 8 * gb):
        task.update(done, 10 * gb)
    task.note = "1/2 files"
    task.close()
    assert lines == [
        "gptoss: weights: 3.0 GB of 10.0 GB (30%), 600.0 MB/s, ETA 12s",  # t=5: 3 GB in 5 s
        "gptoss: weights: 6.0 GB of 10.0 GB (60%), 545.5 MB/s, ETA 7s",  # t=10.5: 3 GB more in 5.5 s
        "gptoss: weights: done, 8.0 GB in 12s, 666.7 MB/s, 1/2 files",
    ]


def test_plain_progress_of_a_short_task_writes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_progress, "clock", iter([0.0, 1.0, 2.0, 3.0]).__next__)
    lines: list[str] = []
    task = PlainProgress("verifying", lines.append)
    for done in (0, 5, 10):
        task.update(done, 10)
    task.close()
    assert lines == []


def test_plain_progress_counts_objects(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_progress, "clock", iter([0.0, 6.0, 7.0]).__next__)
    lines: list[str] = []
    task = PlainProgress("git receiving", lines.append, unit="objects")
    task.update(0, 400)
    task.update(100, 400)
    task.close()
    assert lines == ["gptoss: git receiving: 100 of 400 objects (25%)", "gptoss: git receiving: done, 100 objects in 7s"]


def _fetch(hub: FakeHub, dest: Path, *extra: str):  # noqa: ANN202
    return runner.invoke(app, ["fetch", "--no-code", "--endpoint", hub.url, "--model", "org/big", "--dest",
                               str(dest), "--jobs", "2", *extra])


@pytest.fixture
def big_hub():  # noqa: ANN201
    files = {"config.json": b'{"model_type": "gpt_oss"}\n', SHARD: random_bytes(3 * 1024 * 1024 + 17, 3)}
    with FakeHub([FakeRepo.build("org/big", files)]) as hub:
        yield hub


def test_piped_fetch_prints_throttled_progress_lines(tmp_path: Path, big_hub: FakeHub,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock()
    monkeypatch.setattr(_progress, "clock", clock)
    res = _fetch(big_hub, tmp_path / "dest")
    assert res.exit_code == 0, res.output
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith("gptoss: weights: ")]
    progress = [ln for ln in lines if not ln.startswith("gptoss: weights: done")]
    updates = clock.used - 1  # every clock read but close()'s is one progress update
    assert updates > 10
    assert len(progress) == (updates - 1) // 5  # one line per 5 (fake) seconds, no more
    assert all(re.search(r" of 3\.1 MB \(\d+%\)", ln) and "/s" in ln for ln in progress)
    assert any("ETA" in ln for ln in progress)
    assert lines[-1].startswith("gptoss: weights: done, 3.1 MB in ") and lines[-1].endswith("2/2 files")


def test_quiet_drops_progress_and_info_verbose_adds_detail(tmp_path: Path, big_hub: FakeHub,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_progress, "clock", FakeClock())
    quiet = _fetch(big_hub, tmp_path / "q", "-q")
    assert quiet.exit_code == 0 and quiet.stderr == ""  # no progress, no "Xet disabled" note
    assert SHARD in quiet.stdout  # the result itself stays
    normal = _fetch(big_hub, tmp_path / "n")
    assert "Xet disabled" in normal.stderr and "sha256 checked" not in normal.stderr
    verbose = runner.invoke(app, ["--verbose", "fetch", "--no-code", "--endpoint", big_hub.url, "--model",
                                  "org/big", "--dest", str(tmp_path / "v")])
    assert verbose.exit_code == 0, verbose.output
    assert f"gptoss: {SHARD}: complete, sha256 checked" in verbose.stderr
    assert f"gptoss: fetch.dest = {tmp_path / 'v'} (flag)" in verbose.stderr
    assert "gptoss: config files: none" in verbose.stderr


def test_quiet_and_verbose_together_is_a_usage_error() -> None:
    res = runner.invoke(app, ["-q", "doctor", "-v"])
    assert res.exit_code == 2
    assert res.stderr.strip() == ("gptoss: error: -q/--quiet and -v/--verbose exclude each other; "
                                  "see 'gptoss doctor --help'")


def test_progress_mode_follows_terminal_quiet_json_and_hf_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_HUB_DISABLE_PROGRESS_BARS", raising=False)

    def out(**kw: object) -> Output:
        o = Output(**kw)  # type: ignore[arg-type]
        o.err = Console(file=io.StringIO(), force_terminal=True)
        return o

    assert progress_mode(out()) == "bar"
    assert progress_mode(Output()) == "lines"  # stderr captured by pytest: not a terminal
    assert progress_mode(out(level="quiet")) == "off"
    assert progress_mode(out(json_mode=True)) == "lines"
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    assert progress_mode(out()) == "lines"  # no animated bar: plain lines instead, as in CI
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "0")
    assert progress_mode(out()) == "bar"


def make_dest(root: Path, files: dict[str, bytes]) -> Path:
    entries = []
    for rel, data in files.items():
        (root / "model" / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / "model" / rel).write_bytes(data)
        entries.append(LockedFile(rel, len(data), hashlib.sha256(data).hexdigest(), "lfs"))
    write_lock(root, Lock(code=None, model=ModelPin("hf", "org/m", "c" * 40, "https://huggingface.co"),
                          files=tuple(entries)))
    return root


def test_piped_tables_keep_whole_names_and_hashes(tmp_path: Path) -> None:
    dest = make_dest(tmp_path / "d", {LONG: b"abc", "config.json": b"{}"})
    (dest / "model" / LONG).write_bytes(b"abd")
    res = runner.invoke(app, ["verify", str(dest)], env={"COLUMNS": "40"})
    assert res.exit_code == 1
    assert LONG in res.stdout and "…" not in res.stdout
    assert hashlib.sha256(b"abd").hexdigest() in res.stdout and hashlib.sha256(b"abc").hexdigest() in res.stdout


def _verify_on_a_terminal(dest: Path, *extra: str) -> list[str]:
    code, lines = run_in_terminal([sys.executable, "-m", "gptoss_cli", "verify", str(dest), *extra],
                                  env=dict(os.environ), cols=60, cwd=str(dest))
    assert code == 1, lines
    return lines


def test_no_truncate_folds_instead_of_cutting_on_a_terminal(tmp_path: Path) -> None:
    dest = make_dest(tmp_path / "d", {LONG: b"abc"})
    (dest / "model" / LONG).write_bytes(b"abd")
    cut = "\n".join(_verify_on_a_terminal(dest))
    assert "…" in cut  # a 60-column terminal: rich elides, and the hashes are shortened
    whole = "".join(line.strip("│┃ ") for line in _verify_on_a_terminal(dest, "--no-truncate"))
    assert "…" not in whole
    assert hashlib.sha256(b"abd").hexdigest()[:16] in whole.replace("│", "").replace(" ", "")


def test_dify_register_says_each_status_once_in_a_terminal(tmp_path: Path) -> None:
    with FakeDify(version="1.13.3") as fake, StubOpenAI(structured=False) as stub:
        env = {**os.environ, "DIFY_PW": fake.password}
        code, lines = run_in_terminal([sys.executable, "-m", "gptoss_cli", "dify-register", "--dify-url", fake.url,
                                       "--email", fake.email, "--password-env", "DIFY_PW", "--endpoint-url",
                                       stub.url], env=env, cwd=str(tmp_path))
    assert code == 0, lines
    assert sum("preflight ok" in ln for ln in lines) == 1, lines
    assert sum(ln.startswith("gpt-oss-20b: ") for ln in lines) == 1, lines
    assert sum(ln.startswith("Dify 1.13.3") for ln in lines) == 1, lines
    assert any("structured output registered as not_supported" in ln for ln in lines)  # warnings still show


def test_dify_register_piped_keeps_its_status_lines_and_quiet_drops_them() -> None:
    with FakeDify(version="1.13.3") as fake, StubOpenAI(structured=False) as stub:  # a warning: not satisfiable
        argv = ["dify-register", "--dify-url", fake.url, "--email", fake.email, "--password-env", "DIFY_PW",
                "--endpoint-url", stub.url]
        piped = runner.invoke(app, argv, env={"DIFY_PW": fake.password})
        quiet = runner.invoke(app, [*argv, "-q"], env={"DIFY_PW": fake.password})
    assert piped.exit_code == 0 and "preflight ok" in piped.stderr  # a CI log shows each step as it happens
    assert quiet.exit_code == 0 and "preflight" not in quiet.stderr and "gptoss: warning:" in quiet.stderr
    assert "preflight ok" in quiet.stdout


def test_piped_audit_table_keeps_whole_advisory_ids(tmp_path: Path, fake_osv: FakeOsv) -> None:  # noqa: F811
    req = tmp_path / "requirements.txt"
    req.write_text("demo-web==2.19.0\n")
    res = runner.invoke(app, ["audit", "-r", str(req), "--osv-url", fake_osv.url], env={"COLUMNS": "40"})
    assert res.exit_code == 1, res.output
    assert "GHSA-demo-0001-aaaa" in res.stdout and "CVE-2099-1001" in res.stdout and "…" not in res.stdout


COLOUR = re.compile(r"\x1b\[(?:\d+;)*(?:3[0-9]|4[0-9]|9[0-7]|38;5;\d+|38;2;[\d;]+)m")


def test_no_color_on_a_terminal_drops_colour_from_results_progress_and_errors(tmp_path: Path) -> None:
    dest = make_dest(tmp_path / "d", {"config.json": b"{}"})
    (dest / "model" / "config.json").write_bytes(b"[]")
    argv = [sys.executable, "-m", "gptoss_cli", "verify", str(dest)]
    code, coloured = run_raw_in_terminal(argv, env=dict(os.environ), cwd=str(dest))
    assert code == 1 and COLOUR.search(coloured)  # a terminal gets colour by default (red "mismatch")
    code, plain = run_raw_in_terminal(argv, env={**os.environ, "NO_COLOR": "1"}, cwd=str(dest))
    assert code == 1 and "mismatch" in plain and not COLOUR.search(plain)
