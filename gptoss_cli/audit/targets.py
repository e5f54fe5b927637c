"""What to audit: requirement files and ``pyproject.toml`` found under ``DEST/code``, files given with ``-r``, and the
environment gptoss runs in. Each becomes one ``TargetSpec`` (reported separately)."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gptoss_cli.audit.model import Skipped, Unchecked
from gptoss_cli.audit.requirements import Entry, Parsed, classify, parse_requirements_file

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

KIND_REQUIREMENTS = "requirements"
KIND_PYPROJECT = "pyproject"
KIND_ENVIRONMENT = "environment"

# Folders never searched: VCS data, virtual environments, caches, build output, vendored JavaScript.
_PRUNE = {"node_modules", "venv", "env", "site-packages", "__pycache__", "build", "dist"}
MAX_DEPTH = 8
MAX_FILES = 500


@dataclass(frozen=True)
class TargetSpec:
    kind: str
    path: Path | None
    parsed: Parsed


def is_requirements_name(path: Path) -> bool:
    """``requirements*.txt``, ``*-requirements.txt`` style names, or any ``.txt`` inside a ``requirements/`` folder."""
    name = path.name.lower()
    if not name.endswith(".txt") or "constraint" in name:
        return False
    return "requirements" in name or path.parent.name.lower() == "requirements"


def discover(code_dir: Path) -> list[Path]:
    """Requirement files and ``pyproject.toml`` files under ``code_dir``, sorted; bounded in depth and count."""
    found: list[Path] = []
    root_depth = len(code_dir.parts)
    for current, dirs, files in os.walk(code_dir):
        here = Path(current)
        depth = len(here.parts) - root_depth
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in _PRUNE and depth < MAX_DEPTH)
        for name in sorted(files):
            path = here / name
            if name == "pyproject.toml" or is_requirements_name(path):
                found.append(path)
                if len(found) >= MAX_FILES:
                    return found
    return found


def load_target(path: Path) -> TargetSpec:
    """One file given by the user or found by ``discover``: ``pyproject.toml`` or a requirements file."""
    if path.name == "pyproject.toml":
        return TargetSpec(KIND_PYPROJECT, path, parse_pyproject(path))
    return TargetSpec(KIND_REQUIREMENTS, path, parse_requirements_file(path))


def environment_target() -> TargetSpec:
    return TargetSpec(KIND_ENVIRONMENT, None, Parsed())


def _line_of(lines: list[str], needle: str) -> int | None:
    for number, text in enumerate(lines, start=1):
        if needle in text:
            return number
    return None


def parse_pyproject(path: Path) -> Parsed:
    """``[project].dependencies`` of a ``pyproject.toml`` as entries (the same rules as requirement lines)."""
    try:
        text = path.read_text(encoding="utf-8")
        data: dict[str, Any] = tomllib.loads(text)
    except FileNotFoundError:
        return Parsed(unchecked=(Unchecked(str(path), "pyproject.toml not found", file=path),))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        detail = " ".join(str(exc).split())[:160]
        return Parsed(unchecked=(Unchecked(str(path), f"cannot read pyproject.toml: {detail}", file=path),))
    project = data.get("project")
    if not isinstance(project, dict):
        poetry = data.get("tool", {}).get("poetry", {}) if isinstance(data.get("tool"), dict) else {}
        if isinstance(poetry, dict) and poetry.get("dependencies"):
            return Parsed(unchecked=(Unchecked(
                str(path), "Poetry dependencies are not read: export them (poetry export -f requirements.txt) "
                "and pass the file with -r", file=path),))
        return Parsed(skipped=(Skipped(str(path), "no [project] table: declares no dependencies", file=path),))
    return _project_deps(path, project, text.splitlines())


def _project_deps(path: Path, project: dict[str, Any], lines: list[str]) -> Parsed:
    entries: list[Entry] = []
    unchecked: list[Unchecked] = []
    skipped: list[Skipped] = []
    notes: list[str] = []
    deps = project.get("dependencies")
    if deps is None and "dependencies" in (project.get("dynamic") or []):
        unchecked.append(Unchecked(str(path), "dependencies are dynamic (computed by the build backend): audit "
                                   "the requirements file they come from with -r", file=path))
    elif deps is not None and not (isinstance(deps, list) and all(isinstance(d, str) for d in deps)):
        unchecked.append(Unchecked(str(path), "[project].dependencies is not a list of strings", file=path))
    for dep in deps if isinstance(deps, list) else []:
        if not isinstance(dep, str):
            continue
        item = classify(dep.strip(), path, _line_of(lines, dep))
        if isinstance(item, Entry):
            entries.append(item)
        elif isinstance(item, Unchecked):
            unchecked.append(item)
        else:
            skipped.append(item)
    extras = project.get("optional-dependencies")
    if isinstance(extras, dict) and extras:
        notes.append("optional dependencies (extras) are not audited: " + ", ".join(sorted(map(str, extras))))
    return Parsed(tuple(entries), tuple(unchecked), tuple(skipped), tuple(notes))


@dataclass(frozen=True)
class TargetPlan:
    targets: tuple[TargetSpec, ...]
    problems: tuple[str, ...]


def plan_targets(code_dir: Path | None, requirement_files: list[Path], include_env: bool) -> TargetPlan:
    """All targets in report order: discovered files, then ``-r`` files, then the environment.

    ``code_dir`` is searched only when given. A missing or empty ``code_dir`` is a problem (nothing was checked
    there), reported with the rest rather than mistaken for "clean".
    """
    targets: list[TargetSpec] = []
    problems: list[str] = []
    seen: set[Path] = set()
    if code_dir is not None:
        if not code_dir.is_dir():
            problems.append(f"{code_dir} does not exist: run `gptoss fetch` first, or pass -r FILE / --env")
        else:
            found = discover(code_dir)
            if not found:
                problems.append(f"no requirement files or pyproject.toml found under {code_dir}")
            for path in found:
                seen.add(path.resolve())
                targets.append(load_target(path))
    for path in requirement_files:
        if path.resolve() in seen:
            continue
        seen.add(path.resolve())
        targets.append(load_target(path))
    if include_env:
        targets.append(environment_target())
    return TargetPlan(tuple(targets), tuple(problems))
