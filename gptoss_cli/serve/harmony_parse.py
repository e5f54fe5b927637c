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

from dataclasses import dataclass, field
import re
import secrets
import string
from typing import Callable, Literal, Sequence

from gptoss_cli.serve.engine import Tokenizer

DeltaKind = Literal["reasoning", "content", "tool_call_start", "tool_call_args"]

CHANNELS = ("analysis", "commentary", "final")
ROLES = ("assistant", "user", "system", "developer", "tool")
BUILTIN_TOOLS = ("python", "browser", "container")  # harmony built-ins (``browser.search`` has a dot anyway)
MAX_HEADER_TOKENS = 256  # a header longer than this (in tokens or characters) is prose, not a header
MAX_HEADER_CHARS = 256
MESSAGE_SEPARATOR = "\n\n"  # between two messages of the same kind (two analysis messages, preamble + final)
MAX_HELD_TOKENS = 8  # a UTF-8 character needs at most 4 bytes; more than this is invalid text
_SPECIAL_TEXT = re.compile(r"<\|[^<>|\s]*\|>")
_GLUED = re.compile(r"^(?:assistant)?(?:analysis|commentary|final)(?![a-z])|^assistant(?![a-z])")
_FUNCTION = re.compile(r"functions\.([A-Za-z0-9_\-.]+)")  # the name ends where header junk starts
_BARE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]*")
_TOOL_NAME = re.compile(r"[A-Za-z_][\w-]*(?:\.[\w-]+)+")
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


@dataclass
class _Header:
    role: str = "assistant"
    channel: str | None = None
    recipient: str | None = None
    content_type: str | None = None
    unknown: list[str] = field(default_factory=list)
    explicit_recipient: bool = False  # written as ``to=…`` (not a lone word)


def function_name(recipient: str | None, explicit: bool) -> str | None:
    """The function a recipient names: ``functions.X`` → X; a bare ``to=X`` that is not a built-in tool → X."""
    if not recipient:
        return None
    match = _FUNCTION.match(recipient)
    if match:
        return match.group(1)
    if explicit and _BARE_NAME.fullmatch(recipient) and recipient not in BUILTIN_TOOLS:
        return recipient
    return None


def new_call_id() -> str:
    return "call_" + "".join(secrets.choice(_ALNUM) for _ in range(24))


def parse_header(text: str) -> _Header:
    """Read role, channel, recipient and content type from header text (special tokens as their literal text)."""
    head = _Header()
    marker = "<|channel|>"
    while marker in text:
        before, _, after = text.partition(marker)
        end = next((i for i, c in enumerate(after) if c.isspace() or c == "<"), len(after))
        if head.channel is None and after[:end]:
            head.channel = after[:end]
        text = before + " " + after[end:]
    parts = text.replace("<|constrain|>", " <|constrain|>").split()
    for i, part in enumerate(parts):
        glued = _GLUED.match(part)
        if part.startswith("to="):
            head.recipient = head.recipient or part[3:]
            head.explicit_recipient = True
        elif part in ROLES and i == 0:
            head.role = part
        elif part.startswith("<|constrain|>") or part == "json":
            head.content_type = part
        elif head.channel is None and glued and glued.end() == len(part):
            head.channel = next((c for c in CHANNELS if part.endswith(c)), None)
        else:
            head.unknown.append(part)
    if head.recipient == "assistant" and parts and _TOOL_NAME.fullmatch(parts[0]):
        head.role = "tool"  # a tool result written by the model: "functions.x to=assistant"
        head.unknown.remove(parts[0])
    if head.unknown and head.recipient is None and len(parts) == 1:
        head.recipient = head.unknown.pop()  # a lone word is a recipient, as in openai-harmony
    elif head.unknown and head.content_type is None and head.explicit_recipient:
        head.content_type = head.unknown.pop()
    return head


def salvage_text(text: str) -> str:
    """The prose in a malformed header: markup, channel name and leading role/channel words removed."""
    marker = "<|channel|>"
    if marker in text:
        before, _, after = text.partition(marker)
        end = next((i for i, c in enumerate(after) if c.isspace() or c == "<"), len(after))
        text = before + after[end:]
    text = _SPECIAL_TEXT.sub("", text).lstrip()
    while True:
        match = _GLUED.match(text)
        if not match:
            return text
        text = text[match.end() :].lstrip()


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
        self._current: ParsedMessage | None = None
        self._calls = 0
        self._emitted: dict[str, bool] = {}

    # -- public ------------------------------------------------------------------------------------------------

    def feed(self, token_id: int) -> list[Delta]:
        out: list[Delta] = []
        try:
            self._feed(int(token_id), out)
        except Exception:  # noqa: BLE001 - the parser must never take a request down; resync at the next message
            self._pending, self._header, self._current = [], [], None
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
                self._open(_Header(), out)
        elif name == "channel":  # in content: the model skipped <|end|><|start|>assistant
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

    def _salvage(self, head: _Header, text: str, out: list[Delta]) -> None:
        """A header that is really prose: open a message on its channel and emit the prose."""
        self._open(_Header(role=head.role, channel=head.channel), out)
        self._emit(salvage_text(text), out)

    def _open(self, head: _Header, out: list[Delta]) -> None:
        self._header, self._pending = [], []
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
        """End the current message (flushing held bytes) or salvage a header cut short."""
        if self._state == "content" and self._pending:
            self._emit(self._decode(self._pending), out)
        elif self._state == "header" and self._header:
            text = self._header_text()
            head = parse_header(text)
            if head.explicit_recipient and by_call:
                self._open(head, out)
                self._emit("{}", out)  # a call without <|message|>: a function without arguments
            elif not head.explicit_recipient and salvage_text(text):
                self._salvage(head, text, out)
        self._pending, self._header, self._current = [], [], None
        self._state = "between"

    def _content(self, tok: int, out: list[Delta]) -> None:
        self._pending.append(tok)
        text = self._decode(self._pending)
        if text.endswith("\ufffd") and len(self._pending) < MAX_HELD_TOKENS:
            return  # maybe an incomplete UTF-8 sequence: wait for the next token
        self._pending = []
        self._emit(text, out)

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
        parts: list[str] = []
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
                cached = bool(_SPECIAL_TEXT.fullmatch(self.tokenizer.decode([tok])))
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
