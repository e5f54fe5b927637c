"""Harmony, both directions, pure: OpenAI chat messages → harmony prompt text; generated token ids → deltas.

No I/O, no torch, no fastapi. The renderer is byte-identical to the official ``openai-harmony`` renderer (golden
tests in ``tests/test_harmony_golden.py``); the incremental parser agrees with its ``StreamableParser`` and never
lets harmony markup reach ``content``.

Public interface (used by ``serve/app.py``):

- ``RenderOptions``: reasoning effort, current date, knowledge cutoff, model identity.
- ``render_chat(messages, tools=..., tool_choice=..., response_format=..., options=...) -> str``: the full prompt,
  ending with ``<|start|>assistant``; special tokens appear as their literal text (``<|start|>``) so any tokenizer
  that knows them (o200k_harmony or the demo tokenizer) encodes them to their ids.
- ``HarmonyStreamParser(tokenizer)``: ``feed(token_id) -> list[Delta]``, ``finish() -> list[Delta]``,
  ``finish_reason`` ("stop" | "tool_calls" | None when no stop token was seen).
- ``parse_completion(tokenizer, ids) -> ParsedCompletion``: the non-streaming result of the same parser.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Sequence

from gptoss_cli.serve.engine import Tokenizer

DeltaKind = Literal["reasoning", "content", "tool_call_start", "tool_call_args"]


@dataclass(frozen=True)
class RenderOptions:
    reasoning_effort: str = "medium"  # low | medium | high
    current_date: str | None = None  # "YYYY-MM-DD"; None → today's date (UTC)
    knowledge_cutoff: str = "2024-06"
    model_identity: str = "You are ChatGPT, a large language model trained by OpenAI."


@dataclass(frozen=True)
class Delta:
    """One piece of parsed output.

    ``reasoning`` / ``content``: ``text`` is new text. ``tool_call_start``: a new tool call with ``index``, ``call_id``
    (``call_…``) and ``name``. ``tool_call_args``: more argument text (raw JSON text) for tool call ``index``.
    """

    kind: DeltaKind
    text: str = ""
    index: int = 0
    call_id: str | None = None
    name: str | None = None


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class ParsedCompletion:
    content: str
    reasoning: str
    tool_calls: tuple[ToolCall, ...]
    finish_reason: str | None  # "stop" | "tool_calls" | None (no stop token: caller reports "length")


def render_chat(
    messages: Sequence[dict[str, Any]],
    *,
    tools: Sequence[dict[str, Any]] | None = None,
    tool_choice: Any = None,
    response_format: dict[str, Any] | None = None,
    options: RenderOptions = RenderOptions(),
) -> str:
    """Render OpenAI chat messages (plain dicts) to a harmony prompt ending with ``<|start|>assistant``."""
    raise NotImplementedError  # implemented by the harmony work


class HarmonyStreamParser:
    """Incremental, non-strict parser of generated token ids into deltas."""

    def __init__(self, tokenizer: Tokenizer, *, id_factory: Callable[[], str] | None = None) -> None:
        self.tokenizer = tokenizer
        self.finish_reason: str | None = None
        raise NotImplementedError  # implemented by the harmony work

    def feed(self, token_id: int) -> list[Delta]:
        raise NotImplementedError

    def finish(self) -> list[Delta]:
        raise NotImplementedError


def parse_completion(
    tokenizer: Tokenizer, ids: Sequence[int], *, id_factory: Callable[[], str] | None = None
) -> ParsedCompletion:
    raise NotImplementedError


__all__ = [
    "Delta",
    "HarmonyStreamParser",
    "ParsedCompletion",
    "RenderOptions",
    "ToolCall",
    "parse_completion",
    "render_chat",
]
_ = field  # keep dataclasses.field importable for the implementation
