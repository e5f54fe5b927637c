"""Read and check a policy file (TOML). Every problem is one ``PolicyError`` naming the line it is on.

    version = 1                               # optional

    [[rules]]
    id = "no-id-numbers"                      # letters, digits, . _ : -; unique
    on = "input"                              # input | output
    action = "block"                          # input: block | redact; output: redact | stop
    detectors = ["prc_id", "bank_card"]       # and/or: keywords = [...], regex = "..." (max_length if unbounded)
    roles = ["user", "system", "tool"]        # input only (default: system, developer, user, tool)
    channels = ["final", "reasoning"]         # output only: final, reasoning, tool_arguments (default: final)
    replacement = "[ID]"                      # redact only (default: [REDACTED])
    ignore_case = true                        # keywords (default true) and regex (default false)
    whole_word = false                        # keywords only: ASCII letter/digit boundaries (never for CJK)

    [[terms]]
    preferred = "心肌梗死"
    variants = ["心梗", "心脏病发作"]          # replaced by the preferred term in the output

    [terminology]
    instruct = true                           # add the glossary to the developer instructions
    channels = ["final"]
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

from gptoss_cli.serve.policy.detectors import DETECTORS
from gptoss_cli.serve.policy.matchers import KEEP, UNBOUNDED, KeywordMatcher, RegexMatcher, pattern_shape
from gptoss_cli.serve.policy.model import (CHANNELS, DEFAULT_CHANNELS, DEFAULT_REPLACEMENT, DEFAULT_ROLES,
                                           INPUT_ACTIONS, OUTPUT_ACTIONS, ROLES, TERM_ACTION, Policy, Rule, Term)

MAX_REGEX_LENGTH = 4096
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
_TOP_KEYS = {"version", "rules", "terms", "terminology"}
_RULE_KEYS = {"id", "on", "action", "detectors", "detector", "keywords", "regex", "max_length", "roles", "channels",
              "replacement", "ignore_case", "whole_word", "description"}
_TERM_KEYS = {"id", "preferred", "variants", "ignore_case", "description"}
_TERMINOLOGY_KEYS = {"instruct", "channels"}
_TOML_AT = re.compile(r"^(.*) \(at line (\d+), column (\d+)\)$")


class PolicyError(ValueError):
    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}" if self.line else self.message


class _Lines:
    """Where each key is written: ``at(table, index, key)`` → line number (tables: "", "rules", "terms", ...)."""

    def __init__(self, text: str) -> None:
        self.keys: dict[tuple[str, int, str], int] = {}
        self.headers: dict[tuple[str, int], int] = {}
        counts: dict[str, int] = {}
        table, index = "", 0
        for number, line in enumerate(text.splitlines(), 1):
            stripped = line.strip()
            header = re.match(r"^\[\[\s*([A-Za-z0-9_.-]+)\s*\]\]", stripped) or re.match(
                r"^\[\s*([A-Za-z0-9_.-]+)\s*\]", stripped)
            if header:
                table = header.group(1)
                index = counts.get(table, -1) + 1 if stripped.startswith("[[") else 0
                counts[table] = index
                self.headers.setdefault((table, index), number)
                continue
            key = re.match(r"^([A-Za-z0-9_-]+)\s*=", stripped)
            if key:
                self.keys.setdefault((table, index, key.group(1)), number)

    def at(self, table: str, index: int, key: str | None = None) -> int | None:
        if key is not None and (table, index, key) in self.keys:
            return self.keys[(table, index, key)]
        return self.headers.get((table, index))


def load_policy(path: str | Path) -> Policy:
    """The policy in ``path``; raises ``PolicyError`` (with the line) for anything wrong in it."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
    return parse_policy(text, str(path))


def parse_policy(text: str, source: str = "<policy>") -> Policy:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = _TOML_AT.match(str(exc))
        if m:
            raise PolicyError(f"not valid TOML: {m.group(1)} (column {m.group(3)})", int(m.group(2))) from None
        raise PolicyError(f"not valid TOML: {exc}") from None
    lines = _Lines(text)
    _known(data, _TOP_KEYS, lines, "", 0, "the policy file")
    if data.get("version", 1) != 1:
        raise PolicyError("version must be 1", lines.at("", 0, "version"))
    rules = [_rule(r, i, lines) for i, r in enumerate(_tables(data, "rules", lines))]
    settings = data.get("terminology", {})
    if not isinstance(settings, dict):
        raise PolicyError("terminology must be a table", lines.at("", 0, "terminology"))
    _known(settings, _TERMINOLOGY_KEYS, lines, "terminology", 0, "[terminology]")
    channels = _choices(settings, "channels", CHANNELS, DEFAULT_CHANNELS, lines.at("terminology", 0, "channels"))
    terms = [_term(t, i, lines) for i, t in enumerate(_tables(data, "terms", lines))]
    seen: dict[str, int | None] = {}
    for rule_id, line in [(r.id, r.line) for r in rules] + [(t.id, lines.at("terms", i)) for i, (t, _) in
                                                          enumerate(terms)]:
        if rule_id in seen:
            raise PolicyError(f"rule id {rule_id!r} is used twice (first on line {seen[rule_id]})", line)
        seen[rule_id] = line
    term_rules = [Rule(t.id, "output", TERM_ACTION, (m,), channels=channels, line=lines.at("terms", i))
                  for i, (t, m) in enumerate(terms)]
    instruct = _bool(settings, "instruct", True, lines.at("terminology", 0, "instruct"))
    return Policy(source, tuple(rules + term_rules), tuple(t for t, _ in terms), instruct)


def _tables(data: dict[str, Any], name: str, lines: _Lines) -> list[dict[str, Any]]:
    value = data.get(name, [])
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise PolicyError(f"{name} must be an array of tables ([[{name}]])", lines.at("", 0, name))
    return value


def _known(table: dict[str, Any], allowed: set[str], lines: _Lines, name: str, index: int, what: str) -> None:
    for key in table:
        if key not in allowed:
            raise PolicyError(f"unknown key {key!r} in {what} (known: {', '.join(sorted(allowed))})",
                              lines.at(name, index, key))


def _rule(table: dict[str, Any], index: int, lines: _Lines) -> Rule:
    def where(key: str | None = None) -> int | None:
        return lines.at("rules", index, key)

    rule_id = table.get("id")
    if not isinstance(rule_id, str) or not _ID.match(rule_id):
        raise PolicyError("every rule needs an id: 1-64 letters, digits, '.', '_', ':' or '-' "
                          "(starting with a letter or digit)", where("id"))
    named = f"rule {rule_id!r}"
    _known(table, _RULE_KEYS, lines, "rules", index, named)
    on = table.get("on")
    if on not in ("input", "output"):
        raise PolicyError(f"{named}: on must be input or output", where("on"))
    actions = INPUT_ACTIONS if on == "input" else OUTPUT_ACTIONS
    action = table.get("action")
    if action not in actions:
        raise PolicyError(f"{named}: action of an {on} rule must be {' or '.join(actions)}", where("action"))
    if on == "input" and "channels" in table or on == "output" and "roles" in table:
        key = "channels" if on == "input" else "roles"
        raise PolicyError(f"{named}: {key} is for {'output' if on == 'input' else 'input'} rules", where(key))
    if "replacement" in table and action != "redact":
        raise PolicyError(f"{named}: replacement is for redact rules", where("replacement"))
    replacement = table.get("replacement", DEFAULT_REPLACEMENT)
    if not isinstance(replacement, str):
        raise PolicyError(f"{named}: replacement must be a string", where("replacement"))
    return Rule(rule_id, on, action, _matchers(table, named, where), replacement,
                _choices(table, "roles", ROLES, DEFAULT_ROLES, where("roles")),
                _choices(table, "channels", CHANNELS, DEFAULT_CHANNELS, where("channels")), where())


def _matchers(table: dict[str, Any], named: str, where: Any) -> tuple[Any, ...]:
    out: list[Any] = []
    detectors = table.get("detectors", table.get("detector", []))
    for name in [detectors] if isinstance(detectors, str) else _strings(detectors, named, "detectors", where):
        if name not in DETECTORS:
            key = "detectors" if "detectors" in table else "detector"
            raise PolicyError(f"{named}: unknown detector {name!r} (known: {', '.join(DETECTORS)})", where(key))
        d = DETECTORS[name]
        out.append(RegexMatcher(d.pattern, max_length=d.max_length, validate=d.validate))
    if "keywords" in table:
        keywords = _strings(table["keywords"], named, "keywords", where)
        if not keywords:
            raise PolicyError(f"{named}: keywords is empty", where("keywords"))
        out.append(KeywordMatcher(keywords, ignore_case=_bool(table, "ignore_case", True, where("ignore_case")),
                                  whole_word=_bool(table, "whole_word", False, where("whole_word"))))
    elif "whole_word" in table:
        raise PolicyError(f"{named}: whole_word is for keywords", where("whole_word"))
    if "regex" in table:
        out.append(_regex(table, named, where))
    elif "max_length" in table:
        raise PolicyError(f"{named}: max_length is for regex", where("max_length"))
    if not out:
        raise PolicyError(f"{named}: say what it matches: detectors, keywords or regex", where())
    return tuple(out)


def _regex(table: dict[str, Any], named: str, where: Any) -> RegexMatcher:
    pattern = table["regex"]
    if not isinstance(pattern, str) or not pattern:
        raise PolicyError(f"{named}: regex must be a non-empty string", where("regex"))
    flags = re.IGNORECASE if _bool(table, "ignore_case", False, where("ignore_case")) else 0
    try:
        longest, _, _ = pattern_shape(pattern, flags)
        re.compile(pattern, flags)
    except (re.error, RecursionError, OverflowError) as exc:
        raise PolicyError(f"{named}: regex does not compile: {exc}", where("regex")) from None
    limit = table.get("max_length")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)
                              or not 1 <= limit <= MAX_REGEX_LENGTH):
        raise PolicyError(f"{named}: max_length must be an integer from 1 to {MAX_REGEX_LENGTH}", where("max_length"))
    if limit is None and longest > MAX_REGEX_LENGTH:
        bound = "unbounded" if longest >= UNBOUNDED else f"up to {longest} characters"
        raise PolicyError(f"{named}: regex matches {bound}; set max_length (the longest match to find, which a "
                          "stream holds back at most)", where("regex"))
    if re.compile(pattern, flags).search(""):
        raise PolicyError(f"{named}: regex matches the empty string", where("regex"))
    return RegexMatcher(pattern, flags=flags, max_length=limit)


def _term(table: dict[str, Any], index: int, lines: _Lines) -> tuple[Term, KeywordMatcher]:
    def where(key: str | None = None) -> int | None:
        return lines.at("terms", index, key)

    preferred = table.get("preferred")
    if not isinstance(preferred, str) or not preferred.strip():
        raise PolicyError("every term needs a preferred term (a non-empty string)", where("preferred"))
    named = f"term {preferred!r}"
    _known(table, _TERM_KEYS, lines, "terms", index, named)
    term_id = table.get("id", "term:" + "_".join(preferred.split()))
    if "id" in table and (not isinstance(term_id, str) or not _ID.match(term_id)):
        raise PolicyError(f"{named}: id must be 1-64 letters, digits, '.', '_', ':' or '-'", where("id"))
    variants = _strings(table.get("variants"), named, "variants", where)
    if not variants or preferred in variants:
        raise PolicyError(f"{named}: variants must list the forbidden forms (not the preferred one)",
                          where("variants"))
    ignore_case = _bool(table, "ignore_case", True, where("ignore_case"))
    matcher = KeywordMatcher([*variants, preferred], ignore_case=ignore_case,
                             replacements=[preferred] * len(variants) + [KEEP])
    return Term(term_id, preferred, tuple(variants)), matcher


def _strings(value: Any, named: str, key: str, where: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise PolicyError(f"{named}: {key} must be a list of non-empty strings", where(key))
    return list(value)


def _bool(table: dict[str, Any], key: str, default: bool, line: int | None) -> bool:
    value = table.get(key, default)
    if not isinstance(value, bool):
        raise PolicyError(f"{key} must be true or false", line)
    return value


def _choices(table: dict[str, Any], key: str, allowed: tuple[str, ...], default: frozenset[str],
             line: int | None) -> frozenset[str]:
    if key not in table:
        return default
    value = table[key]
    if not isinstance(value, list) or not value or any(v not in allowed for v in value):
        raise PolicyError(f"{key} must be a non-empty list of: {', '.join(allowed)}", line)
    return frozenset(value)


__all__ = ["PolicyError", "load_policy", "parse_policy"]
