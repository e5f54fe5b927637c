"""Streaming-safe rewriting of one text channel: ``feed`` pieces as they arrive, ``flush`` at the end.

What ``feed`` returns never contains a match of a rule, however the text is split: the tail that could still become
(part of) a match is held back (``hold`` of each matcher: at most the longest match a rule can have, usually far
less), and only text before it is final. Every match found in final text is replaced (redact, terminology) or ends
the channel (stop: ``stopped`` is set, nothing after the match is ever returned). The last few characters already
passed on are kept as context, so lookbehinds see across pieces.

At one position the earliest match wins, then the longest, then the rule written first.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from gptoss_cli.serve.policy.model import Rule

CONTEXT = 16  # characters of already-final text kept for lookbehinds (Python's are fixed-width and short)
_UNKNOWN = object()


class StreamRedactor:
    def __init__(self, rules: Sequence[Rule], on_hit: Callable[[Rule], None],
                 escape: Callable[[str], str] | None = None) -> None:
        self.rules = tuple(rules)
        self._pairs = [(rule, m) for rule in self.rules for m in rule.matchers]
        self.on_hit = on_hit
        self.escape = escape
        self.stopped = False
        self.stop_rule: Rule | None = None
        self.held = ""
        self._context = ""

    def feed(self, text: str) -> str:
        if self.stopped:
            return ""
        if not self._pairs:
            return text
        self.held += text
        return self._run(final=False)

    def flush(self) -> str:
        if self.stopped or not self.held:
            return ""
        return self._run(final=True)

    def _run(self, final: bool) -> str:
        buf = self.held
        limit = len(buf) if final else len(buf) - max(m.hold(buf) for _, m in self._pairs)
        text = self._context + buf
        offset = len(self._context)
        out: list[str] = []
        pos = 0
        ahead: list[Any] = [_UNKNOWN] * len(self._pairs)  # each matcher's next match: searched again only when passed
        while True:
            found = self._next(text, offset + pos, ahead)
            if found is None or found[0] - offset >= limit:
                break
            start, end, replacement, rule = found
            start, end = start - offset, end - offset
            out.append(buf[pos:start])
            if rule.action == "stop":
                self._stop(rule)
                return "".join(out)
            original = buf[start:end]
            replacement = rule.replacement if replacement is None else replacement
            if replacement != original:
                self.on_hit(rule)
                out.append(self.escape(replacement) if self.escape is not None else replacement)
            else:
                out.append(original)
            pos = end
        cut = max(pos, limit)
        out.append(buf[pos:cut])
        self._context = (self._context + buf[:cut])[-CONTEXT:]
        self.held = buf[cut:]
        return "".join(out)

    def _next(self, text: str, pos: int, ahead: list[Any]) -> tuple[int, int, Any, Rule] | None:
        """The earliest match at ``pos`` or later (then the longest, then the first rule). ``ahead`` keeps what each
        matcher found before: a match still ahead of ``pos`` is still its next one, and a matcher that found nothing
        finds nothing later either, so a text is searched once per matcher, not once per match."""
        best: tuple[int, int, Any, Rule] | None = None
        for i, (rule, matcher) in enumerate(self._pairs):
            found = ahead[i]
            if found is _UNKNOWN or (found is not None and found[0] < pos):
                found = ahead[i] = matcher.find(text, pos)
            if found is None:
                continue
            if best is None or found[0] < best[0] or (found[0] == best[0] and found[1] > best[1]):
                best = (found[0], found[1], found[2], rule)
        return best

    def _stop(self, rule: Rule) -> None:
        self.on_hit(rule)
        self.stopped = True
        self.stop_rule = rule
        self.held = ""


def rewrite(rules: Sequence[Rule], text: str, on_hit: Callable[[Rule], None],
            escape: Callable[[str], str] | None = None) -> tuple[str, bool]:
    """A whole text through the rules: (the rewritten text, whether a stop rule ended it)."""
    redactor = StreamRedactor(rules, on_hit, escape)
    out = redactor.feed(text)
    out += redactor.flush()
    return out, redactor.stopped


__all__ = ["CONTEXT", "StreamRedactor", "rewrite"]
