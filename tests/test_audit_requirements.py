"""Requirement files, pyproject.toml and target discovery for `gptoss audit` (pure, no subprocess)."""

from __future__ import annotations

from pathlib import Path

from gptoss_cli.audit.requirements import Entry, classify, parse_requirements_file
from gptoss_cli.audit.model import Skipped, Unchecked
from gptoss_cli.audit.targets import discover, is_requirements_name, parse_pyproject, plan_targets


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_hashes_extras_markers_editables_and_includes(tmp_path: Path) -> None:
    _write(tmp_path / "base.txt", "# shared pins\nidna==2.7  # inline comment\n-r base.txt\n")
    req = _write(tmp_path / "requirements.txt", "\n".join([
        "--index-url https://example.invalid/simple",
        "demo-web[security,socks]==2.19.0 \\",
        "    --hash=sha256:0000000000000000000000000000000000000000000000000000000000000000 \\",
        "    --hash=sha256:1111111111111111111111111111111111111111111111111111111111111111",
        'winonly==1.0; sys_platform == "win32"',
        'everywhere==1.0; python_version >= "3"',
        "Demo_Nofix===1.4",
        "ranged>=1.0,<2",
        "-e .",
        "--editable ./sub/pkg",
        "-e git+https://example.invalid/x.git#egg=xpkg",
        "vcs @ git+https://example.invalid/vcs.git@v1",
        "https://example.invalid/pkgs/thing-1.0-py3-none-any.whl",
        "-c constraints.txt",
        "-r base.txt",
        "-r missing.txt",
        "bad requirement !!",
        "wild==1.*",
    ]) + "\n")
    parsed = parse_requirements_file(req)
    entries = {e.name: e for e in parsed.entries}
    assert entries["demo-web"].pinned == "2.19.0"
    assert entries["demo-web"].line == 2
    assert entries["demo-web"].requirement == "demo-web[security,socks]==2.19.0"
    assert entries["everywhere"].pinned == "1.0"
    assert entries["demo-nofix"].pinned == "1.4"  # === and name normalisation
    assert entries["ranged"].pinned is None
    assert entries["wild"].pinned is None
    assert entries["idna"].pinned == "2.7" and entries["idna"].file == tmp_path / "base.txt"
    assert entries["idna"].line == 2
    assert "winonly" not in entries
    skipped = {s.name: s for s in parsed.skipped}
    assert "marker" in skipped["winonly"].reason
    assert "editable local project" in skipped["."].reason
    assert "./sub/pkg" in skipped
    assert "constraints" in skipped["constraints.txt"].reason
    unchecked = {u.name: u.reason for u in parsed.unchecked}
    assert "VCS" in unchecked["git+https://example.invalid/x.git#egg=xpkg"]
    assert "URL" in unchecked["vcs"]
    assert "URL/archive" in unchecked["https://example.invalid/pkgs/thing-1.0-py3-none-any.whl"]
    assert "not found" in unchecked[str(tmp_path / "missing.txt")]
    assert "not a valid requirement" in unchecked["bad requirement !!"]
    assert any("include cycle" in n for n in parsed.notes)  # base.txt includes itself and is included twice


def test_classify_pins() -> None:
    assert isinstance(classify("a==1.0.0", None, 1), Entry)
    assert classify("a==1.0,!=0.9", None, 1).pinned == "1.0"  # type: ignore[union-attr]
    assert classify("a==01.0", None, 1).pinned == "1.0"  # type: ignore[union-attr]
    assert classify("a", None, 1).pinned is None  # type: ignore[union-attr]
    assert isinstance(classify("x @ file:///srv/src/x", None, 1), Skipped)
    assert isinstance(classify("${PKG}==1", None, 1), Unchecked)


def test_pyproject_dependencies_and_edge_cases(tmp_path: Path) -> None:
    good = _write(tmp_path / "a" / "pyproject.toml", "\n".join([
        "[project]", 'name = "x"', "dependencies = [", '  "demo-web==2.19.0",', '  "tiktoken>=0.9.0",', "]",
        "[project.optional-dependencies]", 'torch = ["torch>=2.7"]',
    ]))
    parsed = parse_pyproject(good)
    pins = {e.name: (e.pinned, e.line) for e in parsed.entries}
    assert pins == {"demo-web": ("2.19.0", 4), "tiktoken": (None, 5)}
    assert any("extras" in n and "torch" in n for n in parsed.notes)
    dynamic = parse_pyproject(_write(tmp_path / "b" / "pyproject.toml",
                                     '[project]\nname = "x"\ndynamic = ["dependencies"]\n'))
    assert "dynamic" in dynamic.unchecked[0].reason
    poetry = parse_pyproject(_write(tmp_path / "c" / "pyproject.toml",
                                    '[tool.poetry.dependencies]\npython = "^3.10"\n'))
    assert "Poetry" in poetry.unchecked[0].reason
    tool_only = parse_pyproject(_write(tmp_path / "d" / "pyproject.toml", "[tool.black]\nline-length = 100\n"))
    assert tool_only.skipped and not tool_only.unchecked
    broken = parse_pyproject(_write(tmp_path / "e" / "pyproject.toml", "[project\n"))
    assert "cannot read" in broken.unchecked[0].reason


def test_discover_finds_requirement_files_and_prunes(tmp_path: Path) -> None:
    code = tmp_path / "code"
    for rel in ("pyproject.toml", "requirements.txt", "dev-requirements.txt", "requirements/test.txt",
                "sub/pkg/pyproject.toml", ".git/requirements.txt", "node_modules/x/requirements.txt",
                ".venv/lib/requirements.txt", "docs/notes.txt", "constraints.txt", "requirements.in"):
        _write(code / rel, "")
    found = [p.relative_to(code).as_posix() for p in discover(code)]
    assert found == ["dev-requirements.txt", "pyproject.toml", "requirements.txt", "requirements/test.txt",
                     "sub/pkg/pyproject.toml"]
    assert is_requirements_name(Path("x/requirements-dev.txt"))
    assert not is_requirements_name(Path("x/requirements-constraints.txt"))


def test_plan_targets_reports_missing_or_empty_code(tmp_path: Path) -> None:
    assert "does not exist" in plan_targets(tmp_path / "nope", [], False).problems[0]
    (tmp_path / "code").mkdir()
    plan = plan_targets(tmp_path / "code", [], True)
    assert "no requirement files" in plan.problems[0]
    assert [t.kind for t in plan.targets] == ["environment"]
