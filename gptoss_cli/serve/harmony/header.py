"""Reading harmony message headers (``assistant to=functions.x<|channel|>commentary <|constrain|>json``) from text.

Pure helpers of ``harmony_parse.py``: the header text has special tokens as their literal text. Also the header words
a model sometimes writes as ordinary text (``analysisLet me think.assistantfinalThe answer``): a channel name glued to
the prose at the start of a header, and ``assistant`` + channel glued inside a message, which starts a new message.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import re

CHANNELS = ("analysis", "commentary", "final")
ROLES = ("assistant", "user", "system", "developer", "tool")
BUILTIN_TOOLS = ("python", "browser", "container")  # harmony built-ins (``browser.search`` has a dot anyway)
SPECIAL_TEXT = re.compile(r"<\|[^<>|\s]*\|>")
GLUED = re.compile(r"^(?:assistant)?(?:analysis|commentary|final)(?![a-z])|^assistant(?![a-z])")
# ``<|start|>assistant<|channel|>final<|message|>`` written as text tokens inside a message: a new message begins
INLINE_HEADER = re.compile(r"assistant(analysis|commentary|final)")
_INLINE_MARKERS = tuple(f"assistant{c}" for c in CHANNELS)
_LONGEST_MARKER = max(len(m) for m in _INLINE_MARKERS)
_FUNCTION = re.compile(r"functions\.([A-Za-z0-9_\-.]+)")  # the name ends where header junk starts
_BARE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]*")
_TOOL_NAME = re.compile(r"[A-Za-z_][\w-]*(?:\.[\w-]+)+")


@dataclass
class Header:
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


def parse_header(text: str) -> Header:
    """Read role, channel, recipient and content type from header text (special tokens as their literal text)."""
    head = Header()
    marker = "<|channel|>"
    while marker in text:
        before, _, after = text.partition(marker)
        end = next((i for i, c in enumerate(after) if c.isspace() or c == "<"), len(after))
        if head.channel is None and after[:end]:
            head.channel = after[:end]
        text = before + " " + after[end:]
    parts = text.replace("<|constrain|>", " <|constrain|>").split()
    for i, part in enumerate(parts):
        glued = GLUED.match(part)
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


def _without_channel_marker(text: str) -> str:
    marker = "<|channel|>"
    if marker in text:
        before, _, after = text.partition(marker)
        end = next((i for i, c in enumerate(after) if c.isspace() or c == "<"), len(after))
        text = before + after[end:]
    return text


def salvage_text(text: str) -> str:
    """The prose in a malformed header: markup, channel name and leading role/channel words removed."""
    text = SPECIAL_TEXT.sub("", _without_channel_marker(text)).lstrip()
    while True:
        match = GLUED.match(text)
        if not match:
            return text
        text = text[match.end() :].lstrip()


def leading_channel(text: str) -> str | None:
    """The channel named by header words glued to the prose (``analysisLet me…`` → analysis), if any."""
    text = SPECIAL_TEXT.sub("", _without_channel_marker(text)).lstrip()
    channel = None
    while True:
        match = GLUED.match(text)
        if not match:
            return channel
        channel = next((c for c in CHANNELS if match.group().endswith(c)), channel)
        text = text[match.end() :].lstrip()


def marker_prefix_length(text: str) -> int:
    """How many characters at the end of ``text`` could still grow into an inline header (``…assist``)."""
    for k in range(min(len(text), _LONGEST_MARKER - 1), 0, -1):
        tail = text[-k:]
        if any(m.startswith(tail) for m in _INLINE_MARKERS):
            return k
    return 0


__all__ = [
    "BUILTIN_TOOLS",
    "CHANNELS",
    "INLINE_HEADER",
    "ROLES",
    "Header",
    "function_name",
    "leading_channel",
    "marker_prefix_length",
    "parse_header",
    "salvage_text",
]
