"""The journal's line format: one JSON object per line, each sealed by its own hash and chained to the one before.

A line is the record's fields, then ``seq`` (1, 2, 3, … across rotated files), ``prev`` (the ``hash`` of the record
before it; ``GENESIS`` for the very first) and last ``hash``::

    {"ts":"2026-12-04T19:00:00.123Z","kind":"request",...,"seq":7,"prev":"<64 hex>","hash":"<64 hex>"}

``hash`` is the SHA-256 of the line's own bytes up to ``,"hash":`` followed by ``}`` — that is, of the record as it
would read without its hash field — so the check is byte-exact (no re-serialising). Editing any byte of a line
breaks its own hash; recomputing that hash breaks the ``prev`` of the line after it; deleting, inserting or
reordering lines breaks ``seq`` and ``prev``; cutting lines from the end shows against FILE.head. The standard
library only.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

GENESIS = "0" * 64
_TAIL = re.compile(rb',"hash":"([0-9a-f]{64})"\}$')


@dataclass(frozen=True)
class Sealed:
    """A line as read back: its fields (None when the line is not a sealed record) and whether its hash holds."""

    fields: dict[str, Any] | None
    hash: str | None  # the hash the line claims
    intact: bool  # the claimed hash is the hash of the line's body

    @property
    def seq(self) -> int | None:
        value = (self.fields or {}).get("seq")
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    @property
    def prev(self) -> str | None:
        value = (self.fields or {}).get("prev")
        return value if isinstance(value, str) else None


def seal(fields: Mapping[str, Any], *, seq: int, prev: str) -> tuple[bytes, str]:
    """The line (with its newline) for ``fields`` at ``seq`` after the record hashed ``prev``, and its hash."""
    body = json.dumps({**fields, "seq": seq, "prev": prev}, ensure_ascii=False, separators=(",", ":"),
                      default=str).encode("utf-8", "backslashreplace")
    digest = hashlib.sha256(body).hexdigest()
    return body[:-1] + b',"hash":"' + digest.encode("ascii") + b'"}\n', digest


def unseal(line: bytes) -> Sealed:
    """Read one line (without its newline)."""
    line = line.rstrip(b"\r")
    match = _TAIL.search(line)
    try:
        fields = json.loads(line)
    except ValueError:
        fields = None
    if not isinstance(fields, dict) or match is None:
        return Sealed(None, None, False)
    claimed = match.group(1).decode("ascii")
    body = line[: match.start()] + b"}"
    return Sealed(fields, claimed, hashlib.sha256(body).hexdigest() == claimed)


HEAD_SIZE = 128


def head_path(journal: Path) -> Path:
    """FILE.head: the last ``seq`` and ``hash`` written to FILE's chain, overwritten in place after each record —
    the one thing that shows records cut from the end of the newest file."""
    return journal.with_name(journal.name + ".head")


def head_bytes(seq: int, digest: str) -> bytes:
    return json.dumps({"seq": seq, "hash": digest}).encode("ascii").ljust(HEAD_SIZE - 1) + b"\n"


def read_head(journal: Path) -> tuple[int, str] | None:
    """FILE.head's ``(seq, hash)``, or None when there is none (or it cannot be read as one)."""
    try:
        data = json.loads(head_path(journal).read_bytes())
        seq, digest = data["seq"], data["hash"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return (seq, digest) if isinstance(seq, int) and isinstance(digest, str) else None


def sha256_text(text: str | None) -> str | None:
    """The hex SHA-256 of ``text`` as UTF-8 (None for None): how prompts and completions are journaled."""
    if text is None:
        return None
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


__all__ = ["GENESIS", "HEAD_SIZE", "Sealed", "head_bytes", "head_path", "read_head", "seal", "sha256_text",
           "unseal"]
