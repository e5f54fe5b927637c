"""OpenAI chat messages (plain dicts from the JSON request) → harmony prompt text ending ``<|start|>assistant``.

Byte-identical to ``openai-harmony`` rendering the same conversation (``tests/test_harmony_golden.py``). The mapping:

- one system message: identity, knowledge cutoff, current date, ``Reasoning: {effort}``, valid channels, and the
  "Calls to these tools must go to the commentary channel: 'functions'." line when function tools are declared;
- every OpenAI ``system`` / ``developer`` message → the developer message's ``# Instructions`` (joined by a blank
  line), then ``# Tools`` (``namespace functions``), then ``# Response Formats`` for a ``json_schema`` format;
- ``tool_choice``: ``"none"`` declares no tools; ``"required"`` and a named function add one sentence to the
  instructions (:data:`REQUIRED_TOOL_INSTRUCTION`, :data:`NAMED_TOOL_INSTRUCTION`); ``response_format``
  ``json_object`` adds :data:`JSON_OBJECT_INSTRUCTION`;
- assistant ``reasoning`` / ``reasoning_content`` / ``thinking`` (or a ``<think>`` block in the content) → an
  ``analysis`` message, kept only for assistant messages after the last user message (the tool-call chain in
  progress), then the library's own rule (drop analysis before the first ``final`` when the last assistant message
  is ``final``);
- assistant ``tool_calls`` → ``<|start|>assistant to=functions.X<|channel|>commentary <|constrain|>json<|message|>
  {arguments}<|call|>``, with text content before them as a ``commentary`` preamble; plain assistant text → ``final``;
- ``tool`` messages → ``<|start|>functions.X to=assistant<|channel|>commentary<|message|>…<|end|>`` (X from the
  matching ``tool_call_id``).

Every client-supplied string reaches the model as text: whatever a message carries (its content, the tool
definitions and response format of the developer message, tool-call names in the role or recipient) is defanged in
one place, :meth:`_Msg.render`, where text that looks like a special token (``<|end|>``) gets a zero-width space
(``<`` ZWSP ``|end|>``). Only the renderer's own markup becomes special tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
import json
import re
from typing import Any, Sequence

from gptoss_cli.serve.harmony.schema import functions_namespace, json_display
from gptoss_cli.serve.harmony.reasoning_wrappers import split_reasoning

REQUIRED_TOOL_INSTRUCTION = "You must call at least one function from the `functions` namespace before answering."
NAMED_TOOL_INSTRUCTION = "You must call the function `functions.{name}` before answering."
JSON_OBJECT_INSTRUCTION = "Respond with a single valid JSON object."
TOOL_CALL_CONTENT_TYPE = "<|constrain|>json"

_EFFORTS = {"low": "low", "medium": "medium", "high": "high", "minimal": "low", "none": "low"}
_THINK_BLOCK = re.compile(r"<think>(.*?)</think>[ \t]*\n*", re.DOTALL)
_SPECIAL_LOOKALIKE = re.compile(r"<\|(?=[A-Za-z0-9_]*\|>)")


@dataclass(frozen=True)
class RenderOptions:
    reasoning_effort: str = "medium"  # low | medium | high ("minimal" / "none" render as low)
    current_date: str | None = None  # "YYYY-MM-DD"; None → today's date (UTC)
    knowledge_cutoff: str | None = "2024-06"  # None → no "Knowledge cutoff:" line
    model_identity: str | None = "You are ChatGPT, a large language model trained by OpenAI."
    tool_call_content_type: str = TOOL_CALL_CONTENT_TYPE  # how earlier tool calls are rendered ("json" also fine)


@dataclass(frozen=True)
class _Msg:
    """One harmony message about to be rendered."""

    head: str  # role, or tool name for tool messages
    text: str
    channel: str | None = None
    recipient: str | None = None
    content_type: str | None = None
    assistant: bool = False
    before_last_user: bool = False

    def render(self) -> str:
        """The message as harmony text; the client's strings (head, recipient, text) are defanged here."""
        out = ["<|start|>", defang(self.head)]
        if self.recipient:
            out.append(f" to={defang(self.recipient)}")
        if self.channel:
            out.append(f"<|channel|>{self.channel}")
        if self.content_type:
            out.append(f" {self.content_type}")
        end = "<|call|>" if self.assistant and self.recipient else "<|end|>"
        out += ["<|message|>", defang(self.text), end]
        return "".join(out)


def defang(text: str) -> str:
    """Break text that would encode as a special token (``<|end|>`` → ``<`` ZWSP ``|end|>``)."""
    return _SPECIAL_LOOKALIKE.sub("<\u200b|", text)


def content_text(content: Any) -> str:
    """OpenAI content (string, None, or a list of text parts) as one string; non-text parts are skipped."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts: list[str] = []
        for part in content:
            if isinstance(part, str):
                texts.append(part)
            elif isinstance(part, dict) and part.get("type") in ("text", "input_text", "output_text"):
                texts.append(str(part.get("text") or ""))
        return "\n".join(texts)
    raise ValueError(f"message content must be a string or a list of parts, not {type(content).__name__}")


def split_think(text: str) -> tuple[str, str]:
    """Remove ``<think>…</think>`` blocks (and a dangling ``…</think>`` prefix); return (content, thinking)."""
    thoughts = [m.group(1).strip() for m in _THINK_BLOCK.finditer(text)]
    text = _THINK_BLOCK.sub("", text)
    if "</think>" in text:
        head, _, text = text.partition("</think>")
        thoughts.append(head.replace("<think>", "").strip())
        text = text.lstrip()
    return text, "\n\n".join(t for t in thoughts if t)


def _effort(value: str) -> str:
    effort = _EFFORTS.get(str(value).strip().lower())
    if effort is None:
        raise ValueError(f"reasoning_effort must be low, medium or high, not {value!r}")
    return effort


def _system_text(options: RenderOptions, has_tools: bool) -> str:
    top = [options.model_identity] if options.model_identity else []
    if options.knowledge_cutoff:
        top.append(f"Knowledge cutoff: {options.knowledge_cutoff}")
    date = options.current_date or datetime.now(timezone.utc).date().isoformat()
    top.append(f"Current date: {date}")
    channels = "# Valid channels: analysis, commentary, final. Channel must be included for every message."
    if has_tools:
        channels += "\nCalls to these tools must go to the commentary channel: 'functions'."
    sections = ["\n".join(top), f"Reasoning: {_effort(options.reasoning_effort)}", channels]
    return "\n\n".join(sections)


def function_tools(tools: Sequence[dict[str, Any]] | None) -> list[tuple[str, str, dict[str, Any] | None]]:
    """OpenAI ``tools`` → (name, description, parameters); a schema without properties means no parameters."""
    out: list[tuple[str, str, dict[str, Any] | None]] = []
    for tool in tools or ():
        if not isinstance(tool, dict) or tool.get("type", "function") != "function":
            continue
        fn = tool.get("function") if isinstance(tool.get("function"), dict) else tool
        name = fn.get("name")
        if not isinstance(name, str) or not name:
            continue
        params = fn.get("parameters")
        if not isinstance(params, dict) or not params.get("properties"):
            params = None
        out.append((name, str(fn.get("description") or ""), params))
    return out


def _tool_choice_instruction(tool_choice: Any) -> str | None:
    if tool_choice == "required":
        return REQUIRED_TOOL_INSTRUCTION
    if isinstance(tool_choice, dict):
        fn = tool_choice.get("function")
        name = fn.get("name") if isinstance(fn, dict) else tool_choice.get("name")
        if isinstance(name, str) and name:
            return NAMED_TOOL_INSTRUCTION.format(name=name)
    return None


def response_format_section(response_format: dict[str, Any] | None) -> str | None:
    """``# Response Formats`` for a ``json_schema`` response format, else None."""
    if not isinstance(response_format, dict) or response_format.get("type") != "json_schema":
        return None
    spec = response_format.get("json_schema")
    if not isinstance(spec, dict):
        return None
    schema = spec.get("schema", spec.get("schema_", {}))
    lines = ["# Response Formats", "", f"## {spec.get('name') or 'response'}", ""]
    if spec.get("description"):
        lines.append(f"// {spec['description']}")
    lines.append(json_display(schema))
    return "\n".join(lines)


def _developer_text(instructions: list[str], tools: list[Any], response_format: dict[str, Any] | None) -> str:
    sections: list[str] = []
    if instructions:
        sections += ["# Instructions", "\n\n".join(instructions)]
    if tools:
        sections.append(functions_namespace(tools))
    formats = response_format_section(response_format)
    if formats:
        sections.append(formats)
    return "\n\n".join(sections)


def _tool_call_parts(msg: dict[str, Any]) -> list[tuple[str | None, str, str]]:
    """(id, name, arguments) of an assistant message's ``tool_calls`` (or legacy ``function_call``)."""
    calls = list(msg.get("tool_calls") or [])
    if isinstance(msg.get("function_call"), dict):
        calls.append({"function": msg["function_call"]})
    out: list[tuple[str | None, str, str]] = []
    for call in calls:
        fn = call.get("function") if isinstance(call, dict) else None
        if not isinstance(fn, dict):
            continue
        args = fn.get("arguments")
        if not isinstance(args, str):
            args = json.dumps({} if args is None else args, ensure_ascii=False)
        out.append((call.get("id"), str(fn.get("name") or ""), args))
    return out


class _Converter:
    def __init__(self, options: RenderOptions) -> None:
        self.options = options
        self.instructions: list[str] = []
        self.msgs: list[_Msg] = []
        self.call_names: dict[str, str] = {}
        self.last_call: str | None = None

    def add(self, msg: Any, before_last_user: bool) -> None:
        if not isinstance(msg, dict):
            raise ValueError("each message must be a JSON object")
        role = msg.get("role")
        if role in ("system", "developer"):
            text = content_text(msg.get("content"))
            if text:
                self.instructions.append(text)
        elif role == "user":
            self.msgs.append(_Msg("user", content_text(msg.get("content"))))
        elif role == "assistant":
            self._assistant(msg, before_last_user)
        elif role in ("tool", "function"):
            self._tool(msg)
        else:
            raise ValueError(f"unsupported message role {role!r}")

    def _assistant(self, msg: dict[str, Any], before_last_user: bool) -> None:
        text, think = split_reasoning(content_text(msg.get("content")))  # Dify's <details>/<think> wrappers
        reasoning = next(
            (msg[k] for k in ("reasoning", "reasoning_content", "thinking") if isinstance(msg.get(k), str) and msg[k]),
            think,
        )
        kw = {"assistant": True, "before_last_user": before_last_user}
        if reasoning:
            self.msgs.append(_Msg("assistant", reasoning, channel="analysis", **kw))
        calls = _tool_call_parts(msg)
        if not calls:
            if text:
                self.msgs.append(_Msg("assistant", text, channel="final", **kw))
            return
        if text.strip():
            self.msgs.append(_Msg("assistant", text, channel="commentary", **kw))
        for call_id, name, args in calls:
            if call_id:
                self.call_names[str(call_id)] = name
            self.last_call = name
            recipient = f"functions.{name}"
            ctype = self.options.tool_call_content_type
            self.msgs.append(_Msg("assistant", args, "commentary", recipient, ctype, **kw))

    def _tool(self, msg: dict[str, Any]) -> None:
        call_id = msg.get("tool_call_id")
        name = self.call_names.get(str(call_id)) if call_id is not None else None
        name = name or msg.get("name") or self.last_call or "tool"
        text = content_text(msg.get("content"))
        self.msgs.append(_Msg(f"functions.{name}", text, channel="commentary", recipient="assistant"))


def _drop_analysis(msgs: list[_Msg]) -> list[_Msg]:
    """Drop earlier turns' analysis, then apply openai-harmony's ``auto_drop_analysis`` rule."""
    msgs = [m for m in msgs if not (m.channel == "analysis" and m.before_last_user)]
    last_assistant = next((m for m in reversed(msgs) if m.assistant), None)
    if last_assistant is None or last_assistant.channel != "final":
        return msgs
    first_final = next(i for i, m in enumerate(msgs) if m.channel == "final")
    return [m for i, m in enumerate(msgs) if not (i < first_final and m.channel == "analysis")]


def render_chat(
    messages: Sequence[dict[str, Any]],
    *,
    tools: Sequence[dict[str, Any]] | None = None,
    tool_choice: Any = None,
    response_format: dict[str, Any] | None = None,
    options: RenderOptions = RenderOptions(),
) -> str:
    """Render OpenAI chat messages (plain dicts) to a harmony prompt ending with ``<|start|>assistant``.

    Raises ValueError for a message that is not an object, an unknown role, content of the wrong type, or an
    unknown reasoning effort (the HTTP layer answers 400).
    """
    messages = list(messages)
    last_user = max((i for i, m in enumerate(messages) if isinstance(m, dict) and m.get("role") == "user"), default=-1)
    conv = _Converter(options)
    for i, msg in enumerate(messages):
        conv.add(msg, before_last_user=i < last_user)
    declared = [] if tool_choice == "none" else function_tools(tools)
    instructions = list(conv.instructions)
    extra = [_tool_choice_instruction(tool_choice) if declared else None]
    if isinstance(response_format, dict) and response_format.get("type") == "json_object":
        extra.append(JSON_OBJECT_INSTRUCTION)
    instructions += [e for e in extra if e]
    parts = [_Msg("system", _system_text(options, bool(declared))).render()]
    developer = _developer_text(instructions, declared, response_format)
    if developer:
        parts.append(_Msg("developer", developer).render())
    parts.extend(m.render() for m in _drop_analysis(conv.msgs))
    parts.append("<|start|>assistant")
    return "".join(parts)


__all__ = [
    "JSON_OBJECT_INSTRUCTION",
    "NAMED_TOOL_INSTRUCTION",
    "REQUIRED_TOOL_INSTRUCTION",
    "RenderOptions",
    "content_text",
    "defang",
    "function_tools",
    "render_chat",
    "response_format_section",
    "split_think",
]
