"""Output rules on OpenAI-shaped replies and stream chunks, for every engine alike.

Channels: ``final`` (``content``; ``text`` of a completion), ``reasoning`` (``reasoning_content`` / ``reasoning``)
and ``tool_arguments`` (each tool call's ``function.arguments``; replacements are JSON-escaped there). Each channel
of each choice has its own ``StreamRedactor``: a chunk carries only text that is final; what is held back is sent
when the channel ends (another channel starts, the choice finishes, or the stream ends), in an extra chunk placed
before the one that ended it. A ``stop`` rule ends the stream: the text before the match, then a chunk with
``finish_reason: "content_filter"``, then nothing more (the generation behind it is closed). In a whole reply the
channel is cut at the match and what the model wrote after it (the answer after the reasoning, tool calls after the
answer) is dropped.

Nothing is changed in place: replies and chunks may be cached objects.
"""

from __future__ import annotations

import copy
import json
from typing import Any, AsyncIterator, Callable

from gptoss_cli.serve.policy.model import Policy, Rule
from gptoss_cli.serve.policy.redact import StreamRedactor, rewrite

CONTENT_FILTER = "content_filter"
_REASONING_KEYS = ("reasoning_content", "reasoning")


def json_escape(text: str) -> str:
    """``text`` as it may stand inside a JSON string (tool-call arguments are JSON text)."""
    return json.dumps(text, ensure_ascii=False)[1:-1]


class OutputFilter:
    """One request's output under ``policy`` (``kind``: chat or completion); ``on_hit`` learns each rule hit."""

    def __init__(self, policy: Policy, on_hit: Callable[[Rule], None], kind: str) -> None:
        self.policy = policy
        self.on_hit = on_hit
        self.chat = kind == "chat"
        self.final_key = "content" if self.chat else "text"
        self.stopped = False
        self._streams: dict[tuple[Any, ...], StreamRedactor] = {}
        self._reasoning_keys: tuple[str, ...] = _REASONING_KEYS
        self._choices: set[int] = set()

    # -- whole replies ----------------------------------------------------------------------------------------------
    def reply(self, body: dict[str, Any]) -> dict[str, Any]:
        body = copy.deepcopy(body)
        for choice in body.get("choices") or []:
            holder = choice.get("message") if self.chat else choice
            if isinstance(holder, dict) and self._reply_choice(holder):
                choice["finish_reason"] = CONTENT_FILTER
        return body

    def _reply_choice(self, holder: dict[str, Any]) -> bool:
        """Rewrite one message in generation order; True when a stop rule cut it."""
        cut = False
        reasoning = next((holder[k] for k in _REASONING_KEYS if isinstance(holder.get(k), str)), None)
        if reasoning is not None:
            text, cut = rewrite(self.policy.output_rules("reasoning"), reasoning, self.on_hit)
            for key in _REASONING_KEYS:
                if key in holder and holder[key] is not None:
                    holder[key] = text
        if isinstance(holder.get(self.final_key), str):
            if cut:
                holder[self.final_key] = "" if not self.chat else None
            else:
                holder[self.final_key], cut = rewrite(self.policy.output_rules("final"), holder[self.final_key],
                                                      self.on_hit)
        calls = holder.get("tool_calls")
        if isinstance(calls, list) and calls:
            if not cut:
                cut = self._reply_calls(calls)
            if cut:
                holder["tool_calls"] = None
        return cut

    def _reply_calls(self, calls: list[Any]) -> bool:
        rules = self.policy.output_rules("tool_arguments")
        for call in calls:
            function = call.get("function") if isinstance(call, dict) else None
            if isinstance(function, dict) and isinstance(function.get("arguments"), str):
                function["arguments"], cut = rewrite(rules, function["arguments"], self.on_hit, json_escape)
                if cut:
                    return True
        return False

    # -- streams ----------------------------------------------------------------------------------------------------
    async def chunks(self, items: AsyncIterator[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
        last: dict[str, Any] | None = None
        try:
            async for chunk in items:
                last = chunk
                for out in self.process(chunk):
                    yield out
                if self.stopped:
                    return
            if last is not None:
                for out in self._flush_choices(last, sorted(self._choices), set()):
                    yield out
        finally:
            close = getattr(items, "aclose", None)
            if close is not None:
                await close()

    def process(self, chunk: dict[str, Any]) -> list[dict[str, Any]]:
        """One chunk in → the chunks to send now (held text may come out in extra chunks before it)."""
        choices = chunk.get("choices")
        if self.stopped or not isinstance(choices, list) or not choices:
            return [] if self.stopped else [chunk]
        before: list[dict[str, Any]] = []
        kept: list[Any] = []
        for choice in choices:
            new = self._stream_choice(chunk, choice, before) if isinstance(choice, dict) else choice
            if new is not None:
                kept.append(new)
            if self.stopped:
                break
        out = before + ([{**chunk, "choices": kept}] if kept else [])
        if self.stopped:
            out += self._flush_choices(chunk, sorted(self._choices), set())
            out.append(self._finish_chunk(chunk))
        return out

    def _stream_choice(self, chunk: dict[str, Any], choice: dict[str, Any],
                       before: list[dict[str, Any]]) -> dict[str, Any] | None:
        index = choice.get("index", 0)
        self._choices.add(index)
        src = choice.get("delta") if self.chat else choice
        if not isinstance(src, dict):
            return choice
        new = dict(src)
        present: set[tuple[Any, ...]] = set()
        had_text = False
        for key, text, starts in self._pieces(index, src):
            had_text = had_text or bool(text)
            if text or starts:
                self._switch(chunk, index, key, present, new, before)
            present.add(key)
            redactor = self._redactor(key)
            self._put(new, key, redactor.feed(text))
            if redactor.stopped:
                self.stopped = True
                self._drop_after(new, key)
                break
        finished = choice.get("finish_reason") is not None
        if finished and not self.stopped:
            before.extend(self._flush_choices(chunk, [index], present, new))
        result = {**choice, "delta": new} if self.chat else {**choice, **new}
        if self.stopped:
            result["finish_reason"] = None
        if (self.stopped or had_text and not finished) and not _meaningful(new, self.final_key):
            return None
        return result

    def _pieces(self, index: int, src: dict[str, Any]) -> list[tuple[tuple[Any, ...], str, bool]]:
        """(channel key, text, whether it starts something) in generation order: reasoning, answer, tool calls."""
        out: list[tuple[tuple[Any, ...], str, bool]] = []
        keys = tuple(k for k in _REASONING_KEYS if isinstance(src.get(k), str))
        if keys:
            self._reasoning_keys = keys
            out.append(((index, "reasoning"), src[keys[0]], False))
        if isinstance(src.get(self.final_key), str):
            out.append(((index, "final"), src[self.final_key], False))
        for pos, call in enumerate(src.get("tool_calls") or []):
            if isinstance(call, dict):
                function = call.get("function") if isinstance(call.get("function"), dict) else {}
                args = function.get("arguments")
                starts = bool(call.get("id") or function.get("name"))
                out.append(((index, "tool", call.get("index", pos), pos), args if isinstance(args, str) else "",
                            starts))
        return out

    def _redactor(self, key: tuple[Any, ...]) -> StreamRedactor:
        stream_key = key[:3]
        redactor = self._streams.get(stream_key)
        if redactor is None:
            tool = key[1] == "tool"
            rules = self.policy.output_rules("tool_arguments" if tool else key[1])
            redactor = StreamRedactor(rules, self.on_hit, json_escape if tool else None)
            self._streams[stream_key] = redactor
        return redactor

    def _put(self, new: dict[str, Any], key: tuple[Any, ...], text: str) -> None:
        if key[1] == "final":
            new[self.final_key] = text
        elif key[1] == "reasoning":
            for k in _REASONING_KEYS:
                if k in new:
                    new[k] = text
        else:
            calls = new["tool_calls"] = list(new["tool_calls"])
            call = dict(calls[key[3]])
            call["function"] = {**call.get("function", {}), "arguments": text}
            calls[key[3]] = call

    def _append(self, new: dict[str, Any], key: tuple[Any, ...], text: str) -> None:
        if key[1] == "final":
            current = new.get(self.final_key) or ""
        elif key[1] == "reasoning":
            current = next((new[k] for k in _REASONING_KEYS if isinstance(new.get(k), str)), "")
        else:
            pos = next(i for i, c in enumerate(new["tool_calls"]) if isinstance(c, dict)
                       and c.get("index", i) == key[2])
            key = (*key[:3], pos)
            current = (new["tool_calls"][pos].get("function") or {}).get("arguments") or ""
        self._put(new, key, current + text)

    def _switch(self, chunk: dict[str, Any], index: int, key: tuple[Any, ...], present: set[tuple[Any, ...]],
                new: dict[str, Any], before: list[dict[str, Any]]) -> None:
        """A new channel of ``index`` starts: the others of that choice are complete, send what they hold."""
        for other, redactor in list(self._streams.items()):
            if other[0] != index or other == key[:3] or not redactor.held:
                continue
            self._release(chunk, other, redactor.flush(), present, new, before)

    def _release(self, chunk: dict[str, Any], key: tuple[Any, ...], text: str, present: set[tuple[Any, ...]],
                 new: dict[str, Any] | None, before: list[dict[str, Any]]) -> None:
        if not text:
            return
        if new is not None and any(p[:3] == key[:3] for p in present):
            self._append(new, key, text)
        else:
            before.append(self._text_chunk(chunk, key, text))

    def _flush_choices(self, chunk: dict[str, Any], indices: list[int], present: set[tuple[Any, ...]],
                       new: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for key, redactor in list(self._streams.items()):
            if key[0] in indices and redactor.held:
                self._release(chunk, key, redactor.flush(), present, new, out)
        return out

    def _drop_after(self, new: dict[str, Any], key: tuple[Any, ...]) -> None:
        """A stop rule hit in ``key``: what this delta holds after it goes."""
        if key[1] == "reasoning" and self.final_key in new:
            new[self.final_key] = ""
        if key[1] != "tool":
            new.pop("tool_calls", None)
        elif isinstance(new.get("tool_calls"), list):
            new["tool_calls"] = new["tool_calls"][: key[3] + 1]

    def _envelope(self, chunk: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in chunk.items() if k not in ("choices", "usage")}

    def _text_chunk(self, chunk: dict[str, Any], key: tuple[Any, ...], text: str) -> dict[str, Any]:
        if key[1] == "final":
            body: dict[str, Any] = {self.final_key: text}
        elif key[1] == "reasoning":
            body = {k: text for k in self._reasoning_keys}
        else:
            body = {"tool_calls": [{"index": key[2], "function": {"arguments": text}}]}
        if self.chat:
            choice = {"index": key[0], "delta": body, "logprobs": None, "finish_reason": None}
        else:
            choice = {"index": key[0], "text": "", "logprobs": None, "finish_reason": None, **body}
        return {**self._envelope(chunk), "choices": [choice]}

    def _finish_chunk(self, chunk: dict[str, Any]) -> dict[str, Any]:
        indices = sorted(self._choices) or [0]
        if self.chat:
            choices = [{"index": i, "delta": {}, "logprobs": None, "finish_reason": CONTENT_FILTER} for i in indices]
        else:
            choices = [{"index": i, "text": "", "logprobs": None, "finish_reason": CONTENT_FILTER} for i in indices]
        return {**self._envelope(chunk), "choices": choices}


def _meaningful(delta: dict[str, Any], final_key: str) -> bool:
    """Whether a rewritten delta still says anything (text, a role, a tool call's id or name or arguments)."""
    if delta.get("role") or delta.get(final_key) or any(delta.get(k) for k in _REASONING_KEYS):
        return True
    for call in delta.get("tool_calls") or []:
        function = call.get("function") or {} if isinstance(call, dict) else {}
        if isinstance(call, dict) and (call.get("id") or function.get("name") or function.get("arguments")):
            return True
    return False


__all__ = ["CONTENT_FILTER", "OutputFilter", "json_escape"]
