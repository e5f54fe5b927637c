"""Reasoning wrappers that clients put into earlier assistant turns: recognised and split from the answer (pure).

A client that shows reasoning often stores it inside the answer text and sends it back on the next turn:

- Dify 0.15 (its own runtime, streamed ``reasoning_content``) stores
  ``<details style="color:gray;background-color: #f8f8f8;padding: 8px;border-radius: 4px;" open> <summary> Thinking...
  </summary>`` + reasoning + ``</details>`` + answer; some builds add a newline after ``</summary>`` or ``</details>``,
  and a reply cut off inside the reasoning has no ``</details>`` at all.
- Dify 1.x's openai_api_compatible plugin (dify-plugin SDK) stores ``<think>\\n`` + reasoning + ``\\n</think>`` + answer;
  other plugins write ``<think/>`` … ``</think/>`` or ``<think …>`` … ``</think >``; a template may drop the opener and
  leave ``reasoning</think>answer``.

``split_reasoning(text)`` returns ``(answer, reasoning)``: every wrapper removed with the whitespace that follows it,
the answer text otherwise exactly as given. A ``<details>`` block is a reasoning wrapper only when its ``<summary>``
says "Thinking…"; any other HTML is answer text. An unclosed wrapper (a reply cut off while reasoning) makes the rest
reasoning, except an unclosed ``<think>`` after answer text, which is a literal tag in the answer.
"""

from __future__ import annotations

import re

_DETAILS_OPEN = re.compile(
    r"<details\b[^>]*>\s*<summary\b[^>]*>\s*Thinking\s*(?:\.\.\.|\u2026)?\s*</summary>", re.IGNORECASE
)
_DETAILS_CLOSE = re.compile(r"</details\s*>", re.IGNORECASE)
_THINK_OPEN = re.compile(r"<think\b[^>]*>", re.IGNORECASE)
_THINK_CLOSE = re.compile(r"</think\s*/?\s*>", re.IGNORECASE)
_KINDS = ((_DETAILS_OPEN, _DETAILS_CLOSE), (_THINK_OPEN, _THINK_CLOSE))
_TRAILING = re.compile(r"\s*")


def _first_opener(text: str, start: int) -> tuple[re.Match[str], re.Pattern[str]] | None:
    found = [(m, close) for opener, close in _KINDS if (m := opener.search(text, start))]
    return min(found, key=lambda pair: pair[0].start()) if found else None


def split_reasoning(text: str) -> tuple[str, str]:
    """``(answer, reasoning)``: wrappers removed from ``text``; several thoughts are joined by a blank line."""
    if "<" not in text:
        return text, ""
    answer: list[str] = []
    thoughts: list[str] = []
    pos = 0
    while (hit := _first_opener(text, pos)) is not None:
        opened, closer = hit
        answer.append(text[pos:opened.start()])
        closed = closer.search(text, opened.end())
        if closed is None and (closer is _DETAILS_CLOSE or not "".join(answer).strip()):
            thoughts.append(text[opened.end():])  # cut off inside the reasoning: the rest is reasoning
            pos = len(text)
            break
        if closed is None:  # a literal "<think>" inside an answer is answer text
            answer.append(opened.group(0))
            pos = opened.end()
            continue
        thoughts.append(text[opened.end():closed.start()])
        pos = _TRAILING.match(text, closed.end()).end()  # type: ignore[union-attr]
    answer.append(text[pos:])
    joined = "".join(answer)
    if not thoughts:
        dangling = _THINK_CLOSE.search(joined)  # "reasoning</think>answer": the opener was never sent
        if dangling is not None:
            thoughts.append(joined[:dangling.start()])
            joined = joined[_TRAILING.match(joined, dangling.end()).end():]  # type: ignore[union-attr]
    return joined, "\n\n".join(t.strip() for t in thoughts if t.strip())


def strip_reasoning(text: str) -> str:
    """The answer alone: ``text`` without any reasoning wrapper."""
    return split_reasoning(text)[0]


__all__ = ["split_reasoning", "strip_reasoning"]
