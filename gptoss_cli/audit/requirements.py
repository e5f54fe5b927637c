"""Read pip requirement files and PEP 508 strings into auditable entries, without running pip.

Each line becomes exactly one of:

* an ``Entry`` — a named requirement; ``pinned`` is its exact version when it is pinned (``==X`` / ``===X``);
* an ``Unchecked`` — something that exists but cannot be looked up (VCS/URL/archive requirement, a line that does not
  parse, an include that is missing, a ``${VAR}``), so the audit must not call itself complete;
* a ``Skipped`` — something that does not apply (marker false for this interpreter, an editable/local project path,
  a constraints file).

Handled syntax: comments, ``\\`` continuations, ``-r/--requirement`` includes (relative to the including file, cycles
ignored), ``-c/--constraint``, ``-e/--editable``, global options (``--index-url`` …, ignored), per-requirement options
(``--hash`` …, stripped), extras and environment markers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from packaging.markers import UndefinedComparison, UndefinedEnvironmentName
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from gptoss_cli.audit.model import Skipped, Unchecked
from gptoss_cli.lockfile import scrub_userinfo

_COMMENT = re.compile(r"(^|\s+)#.*$")
_REQ_OPTION = re.compile(r"\s+--?[A-Za-z]")  # start of per-requirement options (--hash=..., --config-settings ...)
_VCS = ("git+", "hg+", "svn+", "bzr+")
_ARCHIVE = (".whl", ".tar.gz", ".tgz", ".zip", ".tar.bz2", ".tar.xz")
_INCLUDE = ("-r", "--requirement")
_CONSTRAINT = ("-c", "--constraint")
_EDITABLE = ("-e", "--editable")
MAX_INCLUDE_DEPTH = 20


@dataclass(frozen=True)
class Entry:
    """A named requirement: ``requirement`` is the PEP 508 text pip would resolve (marker already evaluated)."""

    name: str
    requirement: str
    pinned: str | None
    file: Path | None
    line: int | None


@dataclass(frozen=True)
class Parsed:
    entries: tuple[Entry, ...] = ()
    unchecked: tuple[Unchecked, ...] = ()
    skipped: tuple[Skipped, ...] = ()
    notes: tuple[str, ...] = ()


@dataclass
class _Acc:
    entries: list[Entry] = field(default_factory=list)
    unchecked: list[Unchecked] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, item: Entry | Unchecked | Skipped) -> None:
        if isinstance(item, Entry):
            self.entries.append(item)
        elif isinstance(item, Unchecked):
            self.unchecked.append(item)
        else:
            self.skipped.append(item)

    def freeze(self) -> Parsed:
        return Parsed(tuple(self.entries), tuple(self.unchecked), tuple(self.skipped), tuple(self.notes))


def exact_pin(req: Requirement) -> str | None:
    """The one version ``req`` allows, if its specifier pins it (``==1.2``, ``===1.2``; not ``==1.*``)."""
    for spec in req.specifier:
        if spec.operator in ("==", "===") and not spec.version.endswith(".*"):
            others = [s for s in req.specifier if s is not spec]
            try:
                if all(s.contains(spec.version, prereleases=True) for s in others):
                    return str(Version(spec.version)) if spec.operator == "==" else spec.version
            except InvalidVersion:
                return spec.version
    return None


def _marker_applies(req: Requirement) -> bool:
    if req.marker is None:
        return True
    try:
        return bool(req.marker.evaluate())
    except (UndefinedEnvironmentName, UndefinedComparison, ValueError):
        return True  # cannot tell: audit it rather than silently drop it


def _looks_like_path(text: str) -> bool:
    return text.startswith((".", "/", "~", "file:")) or (len(text) > 2 and text[1] == ":" and text[2] in "\\/")


def classify(text: str, file: Path | None, line: int | None) -> Entry | Unchecked | Skipped:
    """Classify one requirement string (no pip options) from ``file``:``line``."""
    text = scrub_userinfo(text)  # private VCS/URL requirements often carry a token: never report it
    if "${" in text:
        return Unchecked(text, "uses an environment variable (${...}); expand it and audit the result", text, line, file)
    lowered = text.lower()
    if lowered.startswith(_VCS):
        return Unchecked(text, "VCS requirement: its version is only known after checkout", text, line, file)
    try:
        req = Requirement(text)
    except InvalidRequirement as exc:
        if "://" in text or lowered.endswith(_ARCHIVE):
            return Unchecked(text, "URL/archive requirement: its version cannot be looked up", text, line, file)
        if _looks_like_path(text):
            return Skipped(text, "local project path (audit its own requirements as a target)", line, file)
        detail = " ".join(str(exc).split())[:160]
        return Unchecked(text, f"not a valid requirement: {detail}", text, line, file)
    name = canonicalize_name(req.name)
    if not _marker_applies(req):
        return Skipped(name, f"environment marker is false here ({req.marker})", line, file)
    if req.url:
        if req.url.startswith("file:") and not req.url.lower().endswith(_ARCHIVE):
            return Skipped(name, "local project path (audit its own requirements as a target)", line, file)
        return Unchecked(name, "direct URL reference: its version cannot be looked up", text, line, file)
    extras = f"[{','.join(sorted(req.extras))}]" if req.extras else ""
    return Entry(name, f"{req.name}{extras}{req.specifier}", exact_pin(req), file, line)


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """Join ``\\`` continuations, strip comments; returns (first line number, content) for non-empty lines."""
    out: list[tuple[int, str]] = []
    buf: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        if not buf:
            start = number
        stripped = _COMMENT.sub("", raw).rstrip()
        if stripped.endswith("\\"):
            buf.append(stripped[:-1])
            continue
        buf.append(stripped)
        joined = " ".join(part.strip() for part in buf).strip()
        buf = []
        if joined:
            out.append((start, joined))
    if buf:
        joined = " ".join(part.strip() for part in buf).strip()
        if joined:
            out.append((start, joined))
    return out


def _option(line: str, names: tuple[str, ...]) -> str | None:
    """The value of ``line`` if it is one of the options ``names`` (``-r x``, ``-rx``, ``--requirement=x``)."""
    for name in names:
        if line == name:
            return ""
        if line.startswith(name + "=") or line.startswith(name + " ") or line.startswith(name + "\t"):
            return line[len(name) + 1:].strip()
        if len(name) == 2 and line.startswith(name) and not line.startswith("--"):
            return line[2:].strip()
    return None


def parse_requirements_file(path: Path) -> Parsed:
    """Parse one requirements file (and everything it includes) into entries, unchecked and skipped items."""
    acc = _Acc()
    _parse_into(Path(path), acc, seen=set(), depth=0, included_from=None)
    return acc.freeze()


def _parse_into(path: Path, acc: _Acc, seen: set[Path], depth: int, included_from: tuple[Path, int] | None) -> None:
    key = path.resolve()
    if key in seen:
        acc.notes.append(f"{path}: already included (include cycle), read once")
        return
    seen.add(key)
    where_file, where_line = included_from if included_from else (path, None)
    if depth > MAX_INCLUDE_DEPTH:
        acc.add(Unchecked(str(path), f"includes nested deeper than {MAX_INCLUDE_DEPTH}", "", where_line, where_file))
        return
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        acc.add(Unchecked(str(path), "requirements file not found", "", where_line, where_file))
        return
    except (OSError, UnicodeDecodeError) as exc:
        acc.add(Unchecked(str(path), f"cannot read requirements file: {exc}", "", where_line, where_file))
        return
    for number, line in _logical_lines(text):
        _parse_line(path, number, line, acc, seen, depth)


def _parse_line(path: Path, number: int, line: str, acc: _Acc, seen: set[Path], depth: int) -> None:
    line = scrub_userinfo(line)  # tokens in -e/-r/--index-url URLs must not reach any report
    if line.startswith("-"):
        include = _option(line, _INCLUDE)
        if include is not None:
            if "://" in include:
                acc.add(Unchecked(include, "remote include: not fetched (download it and pass it with -r)",
                                  line, number, path))
            elif not include:
                acc.add(Unchecked(line, "include without a file name", line, number, path))
            else:
                _parse_into(path.parent / include, acc, seen, depth + 1, (path, number))
            return
        constraint = _option(line, _CONSTRAINT)
        if constraint is not None:
            acc.add(Skipped(constraint or line, "constraints file: it limits versions but adds no packages",
                            number, path))
            return
        editable = _option(line, _EDITABLE)
        if editable is not None:
            acc.add(_editable(editable, path, number))
            return
        return  # global options (--index-url, --find-links, --pre, --require-hashes, ...) change nothing here
    requirement = _REQ_OPTION.split(line, maxsplit=1)[0].strip()
    acc.add(classify(requirement, path, number))


def _editable(target: str, path: Path, number: int) -> Unchecked | Skipped:
    lowered = target.lower()
    if lowered.startswith(_VCS) or ("://" in target and not lowered.startswith("file:")):
        return Unchecked(target, "editable VCS/URL requirement: its version is only known after checkout",
                         f"-e {target}", number, path)
    return Skipped(target, "editable local project (audit its own pyproject.toml/requirements as a target)",
                   number, path)
