"""Generated harmony token ids → deltas (reasoning, content, tool calls), incrementally and never raising.

The parser works on token ids and finds the special tokens by their text (``tokenizer.token_id("<|start|>")``), so
the real o200k_harmony ids and a demo tokenizer's ids both work. It starts inside the header of an assistant message
(the prompt ends with ``<|start|>assistant``). Routing of a message by its header:

- recipient ``functions.X`` (in the role part or after the channel) → a tool call named X: ``tool_call_start`` then
  ``tool_call_args`` deltas with the raw JSON text;
- any other recipient (built-in ``python`` / ``browser.*``) → reasoning (not something the client can run);
- channel ``analysis`` → reasoning; ``final``, ``commentary`` (a preamble), no channel or an unknown one → content.

Self-healing, where openai-harmony's ``StreamableParser`` raises or lets markup into the text: text before any
header or after ``<|end|>`` without ``<|start|>`` opens an implicit assistant header; a header that turns out to be
prose (a newline, two unknown words, or too long) becomes content; ``<|start|>`` / ``<|channel|>`` inside content
close the message and open a new header; other special tokens in content are dropped; a header cut short by a stop
token or the end of generation keeps its prose words as content; messages the model writes as another role
(``user``, a tool result) are dropped. No special-token text, channel name or header word reaches the deltas.
"""

from __future__ import annotations

from dataclasses import dataclass
import secrets
import string
from typing import Callable, Literal, Sequence

from gptoss_cli.serve.harmony.tokens import Tokenizer
from gptoss_cli.serve.harmony.header import (
    INLINE_HEADER,
    SPECIAL_TEXT,
    Header,
    function_name,
    leading_channel,
    marker_prefix_length,
    parse_header,
    salvage_text,
)

DeltaKind = Literal["reasoning", "content", "tool_call_start", "tool_call_args"]

MAX_HEADER_TOKENS = 256  # a header longer than this (in tokens or characters) is prose, not a header
MAX_HEADER_CHARS = 256
MESSAGE_SEPARATOR = "\n\n"  # between two messages of the same kind (two analysis messages, preamble + final)
MAX_HELD_TOKENS = 8  # a UTF-8 character needs at most 4 bytes; more than this is invalid text
_ALNUM = string.ascii_letters + string.digits


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


@dataclass
class ParsedMessage:
    """A message as the parser understood it (for tests and debugging; the deltas carry the same text)."""

    role: str
    channel: str | None
    recipient: str | None
    content_type: str | None
    text: str = ""
    kind: str = "content"  # content | reasoning | tool | drop


def new_call_id() -> str:
    return "call_" + "".join(secrets.choice(_ALNUM) for _ in range(24))


class HarmonyStreamParser:
    """Incremental, non-strict parser of generated token ids into deltas."""

    def __init__(self, tokenizer: Tokenizer, *, id_factory: Callable[[], str] | None = None) -> None:
        self.tokenizer = tokenizer
        self.finish_reason: str | None = None
        self.messages: list[ParsedMessage] = []
        self._id_factory = id_factory or new_call_id
        ids = {name: tokenizer.token_id(f"<|{name}|>") for name in _CONTROL_NAMES}
        self._control = {v: k for k, v in ids.items() if v is not None}
        self._single: dict[int, bool] = {}
        self._state = "header"  # header | content | between | done
        self._header: list[int] = []
        self._pending: list[int] = []
        self._prefix = ""  # header text that arrived inside a message (``…assistantfinal``), before ``_header``
        self._tail = ""  # message text held back: it may be the start of ``assistantfinal``
        self._current: ParsedMessage | None = None
        self._calls = 0
        self._emitted: dict[str, bool] = {}

    # -- public ------------------------------------------------------------------------------------------------

    def feed(self, token_id: int) -> list[Delta]:
        out: list[Delta] = []
        try:
            self._feed(int(token_id), out)
        except Exception:  # noqa: BLE001 - the parser must never take a request down; resync at the next message
            self._pending, self._header, self._prefix, self._tail, self._current = [], [], "", "", None
            if self._state != "done":
                self._state = "between"
        return out

    def finish(self) -> list[Delta]:
        out: list[Delta] = []
        try:
            self._close(out)
        except Exception:  # noqa: BLE001
            pass
        self._state = "done"
        return out

    # -- state machine -----------------------------------------------------------------------------------------

    def _feed(self, tok: int, out: list[Delta]) -> None:
        name = self._control.get(tok)
        if self._state == "done":
            return
        if name in ("return", "call", "endoftext"):
            self._close(out, by_call=name == "call")
            self.finish_reason = "tool_calls" if name == "call" and self._calls else "stop"
            self._state = "done"
        elif name == "end":
            self._close(out)
        elif name == "start":
            self._close(out)
            self._state, self._header = "header", []
        elif self._state == "header":
            self._in_header(tok, name, out)
        elif self._state == "between":
            if name == "channel" or (name is None and not self._is_special(tok)):
                self._state, self._header = "header", []  # no <|start|>: an implicit assistant header
                self._in_header(tok, name, out)
            elif name == "message":
                self._open(Header(), out)
        elif name == "channel":  # in content: the model skipped <|end|><|start|>assistant
            if self._tail == "assistant" and not self._pending:
                self._tail = ""  # ... but wrote the role word as text
            self._close(out)
            self._state, self._header = "header", [tok]
        elif name is None and not self._is_special(tok):
            self._content(tok, out)

    def _in_header(self, tok: int, name: str | None, out: list[Delta]) -> None:
        if name == "message":
            self._open(parse_header(self._header_text()), out)
            return
        if name not in (None, "channel", "constrain") or (name is None and self._is_special(tok)):
            return
        self._header.append(tok)
        self._check_header(out)

    def _check_header(self, out: list[Delta]) -> None:
        """Open the message as soon as the header text shows what it is (or that it is really prose)."""
        text = self._header_text()
        too_long = len(self._header) > MAX_HEADER_TOKENS or len(text) > MAX_HEADER_CHARS
        if text.endswith("\ufffd") and len(self._header) < MAX_HEADER_TOKENS + MAX_HELD_TOKENS:
            return
        brace = text.find("{")
        if brace > 0 and "to=" in text[:brace]:  # <|message|> missing before the JSON arguments
            head = parse_header(text[:brace])
            if head.explicit_recipient:
                self._open(head, out)
                self._emit(text[brace:], out)
                return
        head = parse_header(text)
        if head.explicit_recipient:
            if too_long:
                self._open(head, out)
            return
        words = text.split()
        complete = words if text[-1:].isspace() else words[:-1]
        if "\n" in text or too_long or sum(w in head.unknown for w in complete) >= 2:
            self._salvage(head, text, out)

    def _salvage(self, head: Header, text: str, out: list[Delta]) -> None:
        """A header that is really prose: open a message on its channel (``analysisLet me…`` names it too) and
        emit the prose."""
        self._open(Header(role=head.role, channel=head.channel or leading_channel(text)), out)
        self._text(salvage_text(text), out)

    def _open(self, head: Header, out: list[Delta]) -> None:
        self._header, self._pending, self._prefix, self._tail = [], [], "", ""
        recipient = head.recipient if head.recipient not in (None, "assistant", "all", "user") else None
        name = function_name(recipient, head.explicit_recipient)
        if head.role != "assistant":
            kind = "drop"  # the model writes another role's turn: its own turn is over
            self.finish_reason = self.finish_reason or ("tool_calls" if self._calls else "stop")
        elif name:
            kind = "tool"
            out.append(Delta("tool_call_start", index=self._calls, call_id=self._id_factory(), name=name))
            self._calls += 1
        elif recipient or head.channel == "analysis":
            kind = "reasoning"
        else:
            kind = "content"
        self._current = ParsedMessage(head.role, head.channel, head.recipient, head.content_type, kind=kind)
        self.messages.append(self._current)
        self._state = "done" if kind == "drop" else "content"

    def _close(self, out: list[Delta], by_call: bool = False) -> None:
        """End the current message (flushing held bytes and text) or salvage a header cut short. Salvaged text may
        hold header words that start another message (``Ok.assistantfinal4.``): those are closed in turn."""
        for _ in range(MAX_HEADER_CHARS):  # each round consumes one inline header; bounded all the same
            if self._state == "content":
                pending, self._pending = self._pending, []
                if pending:
                    self._text(self._decode(pending), out)
                if self._state == "content":
                    self._emit(self._tail, out)
                    break
            elif self._state == "header" and (self._header or self._prefix):
                text = self._header_text()
                head = parse_header(text)
                self._header, self._prefix = [], ""
                if head.explicit_recipient and by_call:
                    self._open(head, out)
                    self._emit("{}", out)  # a call without <|message|>: a function without arguments
                elif not head.explicit_recipient and salvage_text(text):
                    self._salvage(head, text, out)
                    continue
                break
            else:
                break
        self._pending, self._header, self._prefix, self._tail, self._current = [], [], "", "", None
        self._state = "between"

    def _content(self, tok: int, out: list[Delta]) -> None:
        self._pending.append(tok)
        text = self._decode(self._pending)
        if text.endswith("\ufffd") and len(self._pending) < MAX_HELD_TOKENS:
            return  # maybe an incomplete UTF-8 sequence: wait for the next token
        self._pending = []
        self._text(text, out)

    def _text(self, text: str, out: list[Delta]) -> None:
        """Decoded text of the current message. In reasoning and content, ``assistantfinal`` (a header written as
        text) ends the message and starts the next one; a tail that could still become such words is held back."""
        msg = self._current
        if msg is None or msg.kind not in ("content", "reasoning"):
            self._emit(text, out)
            return
        buf, self._tail = self._tail + text, ""
        match = INLINE_HEADER.search(buf)
        if match is None:
            hold = marker_prefix_length(buf)
            self._tail = buf[len(buf) - hold :]
            self._emit(buf[: len(buf) - hold], out)
            return
        self._emit(buf[: match.start()], out)
        rest = buf[match.end() :]
        self._close(out)
        self._state, self._header = "header", []
        self._prefix = f"<|channel|>{match.group(1)} {rest.lstrip(' ')}"
        self._check_header(out)

    def _emit(self, text: str, out: list[Delta]) -> None:
        msg = self._current
        if not text or msg is None:
            return
        if msg.kind in ("content", "reasoning") and not msg.text and self._emitted.get(msg.kind):
            out.append(Delta(msg.kind, text=MESSAGE_SEPARATOR))  # type: ignore[arg-type]
        msg.text += text
        if msg.kind == "tool":
            out.append(Delta("tool_call_args", text=text, index=self._calls - 1))
        elif msg.kind in ("content", "reasoning"):
            self._emitted[msg.kind] = True
            out.append(Delta(msg.kind, text=text))  # type: ignore[arg-type]

    # -- helpers -----------------------------------------------------------------------------------------------

    def _header_text(self) -> str:
        """Header ids as text, special tokens as their literal text (works with decoders that skip specials)."""
        parts: list[str] = [self._prefix]
        run: list[int] = []
        for tok in self._header:
            name = self._control.get(tok)
            if name is None:
                run.append(tok)
                continue
            if run:
                parts.append(self._decode(run))
                run = []
            parts.append(f"<|{name}|>")
        if run:
            parts.append(self._decode(run))
        return "".join(parts)

    def _decode(self, ids: list[int]) -> str:
        """Decode ids; an id the tokenizer rejects is skipped instead of spoiling the text around it."""
        try:
            return self.tokenizer.decode(ids)
        except Exception:  # noqa: BLE001
            good = [t for t in ids if not self._is_special(t)]
            try:
                return self.tokenizer.decode(good)
            except Exception:  # noqa: BLE001
                return ""

    def _is_special(self, tok: int) -> bool:
        """A special token we do not handle (``<|reserved_200013|>``, ``<|startoftext|>``, …)."""
        if tok in self._control:
            return True
        cached = self._single.get(tok)
        if cached is None:
            try:
                cached = bool(SPECIAL_TEXT.fullmatch(self.tokenizer.decode([tok])))
            except Exception:  # noqa: BLE001 - an id the tokenizer cannot decode is not text
                cached = True
            self._single[tok] = cached
        return cached


_CONTROL_NAMES = ("start", "end", "message", "channel", "constrain", "return", "call", "endoftext", "startoftext")


def parse_completion(
    tokenizer: Tokenizer, ids: Sequence[int], *, id_factory: Callable[[], str] | None = None
) -> ParsedCompletion:
    """The non-streaming result of :class:`HarmonyStreamParser` over all generated ids."""
    parser = HarmonyStreamParser(tokenizer, id_factory=id_factory)
    deltas: list[Delta] = []
    for tok in ids:
        deltas.extend(parser.feed(tok))
    deltas.extend(parser.finish())
    return collect(deltas, parser.finish_reason)


def collect(deltas: Sequence[Delta], finish_reason: str | None) -> ParsedCompletion:
    """Fold deltas into a :class:`ParsedCompletion`."""
    content = "".join(d.text for d in deltas if d.kind == "content")
    reasoning = "".join(d.text for d in deltas if d.kind == "reasoning")
    calls: dict[int, list[str]] = {}
    heads: dict[int, Delta] = {}
    for d in deltas:
        if d.kind == "tool_call_start":
            heads[d.index], calls[d.index] = d, []
        elif d.kind == "tool_call_args" and d.index in calls:
            calls[d.index].append(d.text)
    tool_calls = tuple(
        ToolCall(id=heads[i].call_id or "", name=heads[i].name or "", arguments="".join(calls[i]))
        for i in sorted(heads)
    )
    return ParsedCompletion(content, reasoning, tool_calls, finish_reason)


__all__ = [
    "Delta",
    "DeltaKind",
    "HarmonyStreamParser",
    "ParsedCompletion",
    "ParsedMessage",
    "ToolCall",
    "collect",
    "new_call_id",
    "parse_completion",
    "parse_header",
    "salvage_text",
]
