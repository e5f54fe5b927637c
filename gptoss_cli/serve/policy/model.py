"""The policy as frozen values: rules (input or output, each with an id and an action), glossary terms, and what
applies where. Built by ``load.py`` from a TOML file; read by the input and output filters."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

INPUT_ACTIONS = ("block", "redact")
OUTPUT_ACTIONS = ("redact", "stop")
ROLES = ("system", "developer", "user", "tool", "assistant")
DEFAULT_ROLES = frozenset({"system", "developer", "user", "tool"})
CHANNELS = ("final", "reasoning", "tool_arguments")
DEFAULT_CHANNELS = frozenset({"final"})
DEFAULT_REPLACEMENT = "[REDACTED]"
TERM_ACTION = "terminology"


@dataclass(frozen=True)
class Rule:
    """``on``: input | output. ``action``: block | redact (input), redact | stop (output), terminology (a glossary
    term: its matcher gives each variant the preferred term as replacement)."""

    id: str
    on: str
    action: str
    matchers: tuple[Any, ...]
    replacement: str = DEFAULT_REPLACEMENT
    roles: frozenset[str] = DEFAULT_ROLES
    channels: frozenset[str] = DEFAULT_CHANNELS
    line: int | None = None


@dataclass(frozen=True)
class Term:
    id: str
    preferred: str
    variants: tuple[str, ...]


@dataclass(frozen=True)
class Policy:
    source: str
    rules: tuple[Rule, ...] = ()
    terms: tuple[Term, ...] = ()
    instruct: bool = True  # add the glossary to the developer instructions
    _input: dict[str, tuple[Rule, ...]] = field(default_factory=dict, compare=False, repr=False)
    _output: dict[str, tuple[Rule, ...]] = field(default_factory=dict, compare=False, repr=False)

    def input_rules(self, role: str) -> tuple[Rule, ...]:
        """The input rules for a message of ``role``, in file order."""
        if role not in self._input:
            self._input[role] = tuple(r for r in self.rules if r.on == "input" and role in r.roles)
        return self._input[role]

    def output_rules(self, channel: str) -> tuple[Rule, ...]:
        """The output rules (and glossary terms) for ``channel`` (final, reasoning, tool_arguments), in order."""
        if channel not in self._output:
            self._output[channel] = tuple(r for r in self.rules if r.on == "output" and channel in r.channels)
        return self._output[channel]

    @property
    def has_input(self) -> bool:
        return any(r.on == "input" for r in self.rules) or bool(self.terms and self.instruct)

    def glossary(self) -> str:
        """The terminology section added to the developer instructions ('' without terms)."""
        if not self.terms:
            return ""
        lines = ["# Terminology", "Always write the preferred term; never write the variants listed after it."]
        lines += [f"- {t.preferred} (not: {', '.join(t.variants)})" for t in self.terms]
        return "\n".join(lines)

    def describe(self) -> str:
        inputs = sum(1 for r in self.rules if r.on == "input")
        outputs = sum(1 for r in self.rules if r.on == "output" and r.action != TERM_ACTION)
        return f"{inputs} input rules, {outputs} output rules, {len(self.terms)} terms"


__all__ = ["CHANNELS", "DEFAULT_CHANNELS", "DEFAULT_REPLACEMENT", "DEFAULT_ROLES", "INPUT_ACTIONS", "OUTPUT_ACTIONS",
           "Policy", "ROLES", "Rule", "TERM_ACTION", "Term"]
