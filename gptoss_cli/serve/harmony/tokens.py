"""The harmony special tokens and what harmony needs of a tokenizer (pure; the engines' tokenizers satisfy it)."""

from __future__ import annotations

from typing import Protocol, Sequence, runtime_checkable

# Harmony special tokens at their real o200k_harmony ids (see reference/harmony-and-gptoss.md §2.1).
HARMONY_SPECIAL_TOKENS: dict[str, int] = {
    "<|startoftext|>": 199998,
    "<|endoftext|>": 199999,
    "<|return|>": 200002,
    "<|constrain|>": 200003,
    "<|channel|>": 200005,
    "<|start|>": 200006,
    "<|end|>": 200007,
    "<|message|>": 200008,
    "<|call|>": 200012,
}


# The harmony tokens that end an assistant turn: the one list behind the HTTP layer's stop ids and the engine's
# defaults. ``<|endoftext|>`` is not a harmony stop token, but gpt-oss' generation_config lists it as an eos.
HARMONY_STOP_TEXTS = ("<|return|>", "<|call|>")  # openai-harmony's stop_tokens_for_assistant_actions()
STOP_TOKEN_TEXTS = (*HARMONY_STOP_TEXTS, "<|endoftext|>")


@runtime_checkable
class Tokenizer(Protocol):
    def encode(self, text: str) -> list[int]:
        """Encode text; the literal text of a special token (``<|start|>``) becomes that token's id."""

    def decode(self, ids: Sequence[int]) -> str:
        """Decode ids to text (special tokens as their literal text)."""

    def token_id(self, text: str) -> int | None:
        """The id of a special token given its text, or None when the vocabulary lacks it."""


__all__ = ["HARMONY_SPECIAL_TOKENS", "HARMONY_STOP_TEXTS", "STOP_TOKEN_TEXTS", "Tokenizer"]
