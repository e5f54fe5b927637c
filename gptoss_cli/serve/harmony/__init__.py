"""Harmony, both directions, pure: OpenAI chat messages → harmony prompt text; generated token ids → deltas.

No I/O, no torch, no fastapi. The renderer is byte-identical to the official ``openai-harmony`` renderer (golden
tests in ``tests/test_harmony_golden.py``); the incremental parser agrees with its ``StreamableParser`` on
well-formed output, heals malformed output instead of raising, and never lets harmony markup reach ``content``.

Public interface (used by ``serve/openai/app.py``):

- ``RenderOptions``: reasoning effort, current date, knowledge cutoff, model identity.
- ``render_chat(messages, tools=..., tool_choice=..., response_format=..., options=...) -> str``: the full prompt,
  ending with ``<|start|>assistant``; special tokens appear as their literal text (``<|start|>``) so any tokenizer
  that knows them (o200k_harmony or the demo tokenizer) encodes them to their ids. ValueError on invalid messages.
- ``HarmonyStreamParser(tokenizer)``: ``feed(token_id) -> list[Delta]``, ``finish() -> list[Delta]``,
  ``finish_reason`` ("stop" | "tool_calls" | None when no stop token was seen).
- ``parse_completion(tokenizer, ids) -> ParsedCompletion``: the non-streaming result of the same parser.

The code lives in ``harmony_render.py`` (messages → prompt), ``harmony_schema.py`` (JSON Schema → TypeScript-like
tool definitions) and ``harmony_parse.py`` (token ids → deltas); this module is the stable import point.
"""

from __future__ import annotations

from gptoss_cli.serve.harmony.parse import (
    Delta,
    DeltaKind,
    HarmonyStreamParser,
    ParsedCompletion,
    ToolCall,
    parse_completion,
)
from gptoss_cli.serve.harmony.render import RenderOptions, render_chat

__all__ = [
    "Delta",
    "DeltaKind",
    "HarmonyStreamParser",
    "ParsedCompletion",
    "RenderOptions",
    "ToolCall",
    "parse_completion",
    "render_chat",
]
