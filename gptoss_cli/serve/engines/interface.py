"""The engine seam: what the HTTP layer needs from a model, plus a scripted fake for tests.

The server renders harmony prompts to text, asks the engine's tokenizer for ids, and consumes generated token ids one
at a time (harmony is parsed on tokens, never on decoded text). Engines:

- ``ScriptedEngine`` here: replays token ids, for precise tests of the HTTP layer and the harmony parser.
- ``TransformersEngine`` (``serve/engines/transformers/engine.py``): torch + transformers, imported lazily.

This module imports nothing heavy.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import AsyncIterator, Protocol, Sequence, runtime_checkable

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
GREEDY_TEMPERATURE = 1e-5  # temperatures below this are greedy (dividing logits by 1e-300 overflows float32)


@dataclass(frozen=True)
class SamplingParams:
    """Per-request sampling parameters (honoured per request, also under batching)."""

    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    stop_token_ids: tuple[int, ...] = ()

    @property
    def greedy(self) -> bool:
        return self.temperature < GREEDY_TEMPERATURE


@runtime_checkable
class Tokenizer(Protocol):
    def encode(self, text: str) -> list[int]:
        """Encode text; the literal text of a special token (``<|start|>``) becomes that token's id."""

    def decode(self, ids: Sequence[int]) -> str:
        """Decode ids to text (special tokens as their literal text)."""

    def token_id(self, text: str) -> int | None:
        """The id of a special token given its text, or None when the vocabulary lacks it."""


@runtime_checkable
class Engine(Protocol):
    """A loaded model that turns prompt token ids into a stream of generated token ids."""

    tokenizer: Tokenizer
    max_model_len: int
    description: str

    def load(self) -> None:
        """Load weights (blocking; the server calls it in a worker thread during startup)."""

    def generate(self, prompt_ids: list[int], params: SamplingParams) -> AsyncIterator[int]:
        """Yield generated token ids, stopping after a stop token or ``params.max_tokens`` tokens.

        The stop token itself is yielded (the parser needs to see ``<|return|>`` / ``<|call|>``). Closing the
        iterator or cancelling the consuming task must stop the generation promptly and free its resources.
        """

    def close(self) -> None:
        """Release the model (called on shutdown)."""


class ByteTokenizer:
    """A tiny tokenizer for tests: one id per UTF-8 byte (0–255) plus the harmony specials at their real ids."""

    def __init__(self, specials: dict[str, int] | None = None) -> None:
        self.specials = dict(specials or HARMONY_SPECIAL_TOKENS)
        self._by_id = {v: k for k, v in self.specials.items()}

    def encode(self, text: str) -> list[int]:
        ids: list[int] = []
        i = 0
        while i < len(text):
            if text.startswith("<|", i):
                end = text.find("|>", i)
                if end != -1 and text[i : end + 2] in self.specials:
                    ids.append(self.specials[text[i : end + 2]])
                    i = end + 2
                    continue
            ids.extend(text[i].encode("utf-8"))
            i += 1
        return ids

    def decode(self, ids: Sequence[int]) -> str:
        out: list[str] = []
        buf = bytearray()
        for t in ids:
            if t in self._by_id:
                out.append(buf.decode("utf-8", errors="replace"))
                buf.clear()
                out.append(self._by_id[t])
            else:
                buf.append(t)
        out.append(buf.decode("utf-8", errors="replace"))
        return "".join(out)

    def token_id(self, text: str) -> int | None:
        return self.specials.get(text)


@dataclass
class ScriptedEngine:
    """Replays scripted completions as token ids; records the prompts it was given.

    ``script`` is a list of completions, each a harmony text (``<|channel|>final<|message|>Hi<|return|>``) or a list
    of token ids; request ``n`` gets ``script[n % len(script)]``. ``delay`` seconds pass between tokens.
    """

    script: list[str | list[int]]
    tokenizer: Tokenizer = field(default_factory=ByteTokenizer)
    max_model_len: int = 4096
    delay: float = 0.0
    description: str = "scripted test engine"
    prompts: list[list[int]] = field(default_factory=list)
    params: list[SamplingParams] = field(default_factory=list)
    loaded: bool = False
    cancelled: int = 0

    def load(self) -> None:
        self.loaded = True

    def close(self) -> None:
        self.loaded = False

    async def generate(self, prompt_ids: list[int], params: SamplingParams) -> AsyncIterator[int]:
        index = len(self.prompts)
        self.prompts.append(list(prompt_ids))
        self.params.append(params)
        item = self.script[index % len(self.script)]
        ids = self.tokenizer.encode(item) if isinstance(item, str) else list(item)
        stops = set(params.stop_token_ids)
        try:
            for produced, tok in enumerate(ids):
                if produced >= params.max_tokens:
                    return
                if self.delay:
                    await asyncio.sleep(self.delay)
                yield tok
                if tok in stops:
                    return
        except (asyncio.CancelledError, GeneratorExit):
            self.cancelled += 1
            raise


__all__ = [
    "GREEDY_TEMPERATURE",
    "HARMONY_SPECIAL_TOKENS",
    "HARMONY_STOP_TEXTS",
    "STOP_TOKEN_TEXTS",
    "ByteTokenizer",
    "Engine",
    "SamplingParams",
    "ScriptedEngine",
    "Tokenizer",
]
