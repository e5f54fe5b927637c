"""Scripted stand-ins for a model: ``ByteTokenizer`` and ``ScriptedEngine`` replay token ids for precise tests of
the HTTP layer, the pipeline and the harmony parser (and for ``bench/``). Nothing heavy is imported."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import AsyncIterator, Sequence

from gptoss_cli.serve.engines.interface import HARMONY_SPECIAL_TOKENS, SamplingParams, Tokenizer


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


__all__ = ["ByteTokenizer", "ScriptedEngine"]
