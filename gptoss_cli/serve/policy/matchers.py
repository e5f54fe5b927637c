"""Matchers: find the next match in a text, and say how much of a stream's tail could still become one.

``find(text, pos)`` returns the earliest match starting at ``pos`` or later as ``(start, end, replacement)``
(``replacement`` None: the rule's own). ``text`` may begin with already-sent context (lookbehinds read it).

``hold(tail)`` is the number of trailing characters of ``tail`` that may still be part of a match (or the context a
lookahead needs) once more text arrives; everything before them is final. This is what makes redaction
streaming-safe while holding back as little as possible:

- a regex holds the trailing run of characters its pattern can match at all (its *alphabet*, read from the parsed
  pattern), at most its longest match plus its longest lookahead. ``a@b.co`` is held (the next token may be ``m``);
  after ``a@b.com.`` and a space, nothing is held. A pattern whose alphabet cannot be read (``.``, ``[^x]``)
  holds its whole bound;
- a keyword list holds the longest tail that is the beginning of one of its keywords.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Sequence

try:  # the parser behind ``re`` (Python 3.11+: re._parser; before: sre_parse)
    import re._parser as _sre  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - Python < 3.11
    import sre_parse as _sre  # type: ignore[no-redef]

Found = tuple[int, int, "str | None"]
UNBOUNDED = int(getattr(_sre, "MAXREPEAT", 2**32)) // 2
_CATEGORIES = {"CATEGORY_DIGIT": r"\d", "CATEGORY_NOT_DIGIT": r"\D", "CATEGORY_SPACE": r"\s",
               "CATEGORY_NOT_SPACE": r"\S", "CATEGORY_WORD": r"\w", "CATEGORY_NOT_WORD": r"\W"}


class Unknown(Exception):
    """The pattern can match characters we cannot list (``.``, a negated class)."""


def _char(code: int) -> str:
    return f"\\U{code:08x}"


def _alphabet(items: Any, out: list[str]) -> None:
    """Add to ``out`` a character-class body for every character the parsed pattern ``items`` can match."""
    for op, arg in items:
        name = str(op)
        if name == "LITERAL":
            out.append(_char(arg))
        elif name == "IN":
            for sub_op, sub_arg in arg:
                sub = str(sub_op)
                if sub == "LITERAL":
                    out.append(_char(sub_arg))
                elif sub == "RANGE":
                    out.append(f"{_char(sub_arg[0])}-{_char(sub_arg[1])}")
                elif sub == "CATEGORY" and str(sub_arg) in _CATEGORIES:
                    out.append(_CATEGORIES[str(sub_arg)])
                else:  # NEGATE and anything else
                    raise Unknown(sub)
        elif name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
            _alphabet(arg[2], out)
        elif name == "SUBPATTERN":
            _alphabet(arg[-1], out)
        elif name == "ATOMIC_GROUP":
            _alphabet(arg, out)
        elif name == "BRANCH":
            for branch in arg[1]:
                _alphabet(branch, out)
        elif name in ("ASSERT", "ASSERT_NOT"):
            _alphabet(arg[1], out)
        elif name == "CATEGORY" and str(arg) in _CATEGORIES:
            out.append(_CATEGORIES[str(arg)])
        elif name != "AT":  # anchors match no character
            raise Unknown(name)


def _lookahead(items: Any) -> int:
    """The widest lookahead anywhere in the parsed pattern (characters after a match it may read)."""
    widest = 0
    for op, arg in items:
        name = str(op)
        subs: list[Any] = []
        if name in ("ASSERT", "ASSERT_NOT"):
            if arg[0] == 1:
                widest = max(widest, min(arg[1].getwidth()[1], UNBOUNDED))
            subs = [arg[1]]
        elif name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
            subs = [arg[2]]
        elif name == "SUBPATTERN":
            subs = [arg[-1]]
        elif name == "BRANCH":
            subs = list(arg[1])
        for sub in subs:
            widest = max(widest, _lookahead(sub))
    return widest


def pattern_shape(pattern: str, flags: int = 0) -> tuple[int, int, str | None]:
    """(longest match, widest lookahead, alphabet class body or None) of ``pattern``; the longest match is
    ``UNBOUNDED`` or more for patterns such as ``a+``. Raises ``re.error`` for an invalid pattern."""
    tree = _sre.parse(pattern, flags)
    longest = min(tree.getwidth()[1], UNBOUNDED)
    body: list[str] = []
    try:
        _alphabet(tree, body)
        alphabet: str | None = "".join(body)
    except Unknown:
        alphabet = None
    return longest, _lookahead(tree), alphabet


class RegexMatcher:
    """One regular expression (a built-in detector or a user's ``regex``), optionally checked by ``validate``."""

    def __init__(self, pattern: str, *, flags: int = 0, max_length: int | None = None,
                 validate: Callable[[str], bool] | None = None) -> None:
        self.regex = re.compile(pattern, flags)
        longest, lookahead, alphabet = pattern_shape(pattern, flags)
        self.max_length = min(longest, max_length) if max_length else longest
        self.window = self.max_length + lookahead
        self.validate = validate
        # ``.*`` then one character outside the alphabet: the end of the match is where the trailing run begins
        # (case-insensitive: a scoped ``(?i:...)`` can only make the alphabet wider, never narrower)
        last = f"(?s:.*)[^{alphabet}]"
        self._last_outside = re.compile(last, self.regex.flags | re.IGNORECASE) if alphabet else None
        self._nothing = alphabet == ""

    def find(self, text: str, pos: int) -> Found | None:
        m = self.regex.search(text, pos)
        while m is not None:
            if m.end() > m.start() and (self.validate is None or self.validate(m.group())):
                return m.start(), m.end(), None
            m = self.regex.search(text, m.start() + 1)
        return None

    def hold(self, tail: str) -> int:
        if self._nothing:
            return 0
        start = max(0, len(tail) - self.window)
        if self._last_outside is None:
            return len(tail) - start
        m = self._last_outside.match(tail, start)
        return len(tail) - (m.end() if m is not None else start)


_ASCII_WORD = re.compile(r"[A-Za-z0-9_]")
KEEP = "\x00keep"  # a keyword's replacement meaning "leave it as written" (a glossary's preferred term itself)


class KeywordMatcher:
    """Fixed strings, substring matches (right for CJK text); ``whole_word`` adds boundaries made of ASCII letters,
    digits and ``_`` only, at keyword ends that are such characters. ``replacements`` gives each keyword its own
    replacement (terminology); otherwise the rule's is used."""

    def __init__(self, keywords: Sequence[str], *, ignore_case: bool = True, whole_word: bool = False,
                 replacements: Sequence[str | None] | None = None) -> None:
        order = sorted(range(len(keywords)), key=lambda i: -len(keywords[i]))  # longest first at the same start
        self.keywords = [keywords[i] for i in order]
        self.replacements = [replacements[i] for i in order] if replacements else [None] * len(order)
        self.ignore_case = ignore_case
        alternatives = []
        for kw in self.keywords:
            left = r"(?<![A-Za-z0-9_])" if whole_word and _ASCII_WORD.match(kw[0]) else ""
            right = r"(?![A-Za-z0-9_])" if whole_word and _ASCII_WORD.match(kw[-1]) else ""
            alternatives.append(f"{left}({re.escape(kw)}){right}")
        self.regex = re.compile("|".join(alternatives), re.IGNORECASE if ignore_case else 0)
        self.longest = max(len(k) for k in self.keywords)
        self.window = self.longest + (1 if whole_word else 0)
        self._prefixes = {self._norm(kw[:j]) for kw in self.keywords for j in range(1, len(kw) + 1)}

    def _norm(self, text: str) -> str:
        return text.lower() if self.ignore_case else text

    def find(self, text: str, pos: int) -> Found | None:
        m = self.regex.search(text, pos)
        if m is None:
            return None
        replacement = self.replacements[(m.lastindex or 1) - 1]
        return m.start(), m.end(), m.group() if replacement == KEEP else replacement

    def hold(self, tail: str) -> int:
        for j in range(min(self.longest, len(tail)), 0, -1):
            if self._norm(tail[-j:]) in self._prefixes:
                return j
        return 0


__all__ = ["KEEP", "KeywordMatcher", "RegexMatcher", "UNBOUNDED", "pattern_shape"]
