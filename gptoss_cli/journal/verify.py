"""``verify_journal(files)``: walk the chain across FILE.N … FILE.1, FILE and report the first broken record.

Files are put in chain order (the highest rotation number is the oldest; the bare FILE is the newest); given just
FILE, its rotated siblings FILE.1, FILE.2, … are checked too. Every line must be intact (its own hash), carry the
next ``seq`` and link (``prev``) to the line before it; the first line of the chain links to ``GENESIS`` with
``seq`` 1. The first problem is named by kind:

- ``edited``: the line's own hash does not match its bytes (or it is not a record at all), or — its hash recomputed —
  the next line's ``prev`` no longer matches it;
- ``deleted``: records are missing before this line (``seq`` jumps, and the missing ones appear nowhere);
- ``inserted``: a line that is not part of the chain (the line after it links to the one before it, or it repeats
  a ``seq`` already seen);
- ``reordered``: the line belongs elsewhere in the chain (its predecessor or the expected record comes later).

Records cut from the end of the newest file break no link: they show against FILE.head (the last ``seq`` and
``hash`` the writer reached, kept next to FILE) as ``deleted``. Without FILE.head (a copy of the journal alone), compare
``last_seq`` with what you expect.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from gptoss_cli.errors import UsageError
from gptoss_cli.journal.chain import GENESIS, Sealed, head_path, read_head, unseal

_ROTATED = re.compile(r"^(?P<base>.+)\.(?P<n>\d+)$")


@dataclass(frozen=True)
class Problem:
    kind: str  # edited | deleted | inserted | reordered
    file: str
    line: int  # 1-based, in that file
    seq: int | None
    message: str


@dataclass(frozen=True)
class JournalReport:
    files: tuple[str, ...]
    records: int
    last_seq: int | None
    last_hash: str | None
    problem: Problem | None = None
    kinds: dict[str, int] = field(default_factory=dict)  # records per kind (request, policy, start, ...)

    @property
    def ok(self) -> bool:
        return self.problem is None


@dataclass(frozen=True)
class _Line:
    file: str
    number: int
    record: Sealed


def chain_order(paths: Iterable[Path]) -> list[Path]:
    """Oldest first: FILE.N … FILE.1, FILE; given only FILE, its rotated siblings are added."""
    given = [Path(p) for p in paths]
    if len(given) == 1 and not _ROTATED.match(given[0].name):
        base = given[0]
        folder = base.parent if str(base.parent) else Path(".")
        siblings = [p for p in folder.iterdir() if _rotation(p, base.name) is not None] if folder.is_dir() else []
        given += siblings

    def key(p: Path) -> tuple[str, int]:
        m = _ROTATED.match(p.name)
        return (str(p.parent / m.group("base")), -int(m.group("n"))) if m else (str(p), 0)

    return sorted(dict.fromkeys(given), key=key)


def _rotation(path: Path, base: str) -> int | None:
    m = _ROTATED.match(path.name)
    return int(m.group("n")) if m and m.group("base") == base else None


def verify_journal(paths: Iterable[Path]) -> JournalReport:
    files = chain_order(paths)
    if not files:
        raise UsageError("give at least one journal file")
    lines = list(_read(files))
    names = tuple(str(p) for p in files)
    kinds: dict[str, int] = {}
    for ln in lines:
        kind = str((ln.record.fields or {}).get("kind", "?"))
        kinds[kind] = kinds.get(kind, 0) + 1
    problem = first_problem(lines) or _against_head(files[-1], lines)
    last = lines[-1].record if lines else None
    return JournalReport(names, len(lines), last.seq if last else None, last.hash if last else None, problem, kinds)


def _read(files: list[Path]) -> Iterable[_Line]:
    for path in files:
        try:
            data = path.read_bytes()
        except OSError as exc:
            from gptoss_cli.errors import CouldNotRun

            raise CouldNotRun(f"cannot read {path}: {exc.strerror or exc}") from None
        if not data:
            continue
        chunks = data.split(b"\n")
        if chunks[-1] == b"":
            chunks.pop()
        else:
            chunks[-1] = chunks[-1] + b"\x00"  # no final newline: an interrupted or edited last line
        for number, chunk in enumerate(chunks, 1):
            yield _Line(str(path), number, unseal(chunk))


def first_problem(lines: list[_Line]) -> Problem | None:
    for i, ln in enumerate(lines):
        rec = ln.record
        before = lines[i - 1].record if i else None
        want_seq = before.seq + 1 if before is not None and before.seq is not None else 1
        want_prev = before.hash if before is not None else GENESIS
        if not rec.intact or rec.seq is None or rec.prev is None:
            if _links(lines[i + 1].record if i + 1 < len(lines) else None, want_seq, want_prev):
                return _problem("inserted", ln, "this line is not part of the chain (the next one links to the "
                                "one before it)")
            what = "is not a sealed journal record" if rec.fields is None else "does not match its own hash"
            return _problem("edited", ln, f"the line {what}")
        if not _links(rec, want_seq, want_prev):
            return _classify(lines, i, want_seq, want_prev)
    return None


def _links(rec: Sealed | None, seq: int, prev: str | None) -> bool:
    return rec is not None and rec.intact and rec.seq == seq and rec.prev == prev


def _classify(lines: list[_Line], i: int, want_seq: int, want_prev: str | None) -> Problem:
    ln, rec = lines[i], lines[i].record
    hashes = {line.record.hash: j for j, line in enumerate(lines) if line.record.hash}
    at = hashes.get(rec.prev)  # the line this one links to
    if i == 0 and at is None and rec.seq is not None and rec.seq > 1:
        return _problem("deleted", ln, f"the chain starts at seq {rec.seq}: {_gap(1, rec.seq)} missing "
                        "(give the older rotated files too)")
    copy = next((j for j, line in enumerate(lines[:i]) if line.record.hash == rec.hash), None)
    if copy is not None:
        return _problem("inserted", ln, f"a copy of line {lines[copy].number} of {lines[copy].file}")
    if at is not None and at < i - 1 and lines[at].record.seq == (rec.seq or 0) - 1:
        return _problem("inserted", lines[at + 1], "this line is not part of the chain (a later record links to "
                        "the one before it)")
    if at is not None and at > i:
        return _problem("reordered", ln, f"seq {rec.seq} is out of order: its predecessor comes later")
    if rec.seq == want_seq and at is None and i:
        return _problem("edited", lines[i - 1], "the record was changed and its hash recomputed: the next record "
                        "links to a different one")
    if rec.seq in {line.record.seq for line in lines[:i]}:
        return _problem("inserted", ln, f"seq {rec.seq} appears twice: this line is not part of the chain")
    if _links(lines[i + 1].record if i + 1 < len(lines) else None, want_seq, want_prev):
        return _problem("inserted", ln, "this line is not part of the chain (the next one links to the one before)")
    if any(line.record.seq == want_seq for line in lines[i + 1:]):
        return _problem("reordered", ln, f"seq {rec.seq} is out of order (expected seq {want_seq} here)")
    if rec.seq is not None and rec.seq > want_seq:
        return _problem("deleted", ln, f"{_gap(want_seq, rec.seq)} missing before this line")
    return _problem("edited", ln, f"the record does not link to the one before it (seq {rec.seq}, "
                    f"expected {want_seq})")


def _against_head(newest: Path, lines: list[_Line]) -> Problem | None:
    """Records cut from the end of the newest file show only against FILE.head (when it is there)."""
    head = read_head(newest) if not _ROTATED.match(newest.name) else None
    if head is None:
        return None
    seq, digest = head
    last = lines[-1].record.seq if lines else 0
    if last is not None and seq > last:
        count = sum(1 for ln in lines if ln.file == str(newest))
        where = _Line(str(newest), count + 1, Sealed(None, None, False))
        return Problem("deleted", where.file, where.number, last + 1, f"{_gap(last + 1, seq + 1)} missing at the "
                       f"end ({head_path(newest).name} says the journal reached seq {seq})")
    match = next((ln for ln in lines if ln.record.seq == seq), None)
    if match is not None and match.record.hash != digest:
        return _problem("edited", match, f"the record differs from the one {head_path(newest).name} recorded")
    return None


def _gap(first: int, upto: int) -> str:
    return f"record seq {first} is" if upto == first + 1 else f"records seq {first}-{upto - 1} are"


def _problem(kind: str, ln: _Line, message: str) -> Problem:
    return Problem(kind, ln.file, ln.number, ln.record.seq, message)


__all__ = ["JournalReport", "Problem", "chain_order", "first_problem", "verify_journal"]
