"""Corpora and helpers for the harmony tests: an o200k_harmony tokenizer, conversations, generated token sequences.

- ``o200k_harmony()``: a tiktoken ``Encoding`` with the harmony special tokens, built offline from
  ``gptoss_cli/vocab/o200k_base.tiktoken``, wrapped to satisfy ``serve.engine.Tokenizer``.
- ``reference_encoding()``: openai-harmony's encoding, loaded offline (``TIKTOKEN_ENCODINGS_BASE``).
- ``CONVERSATIONS``: OpenAI chat requests; ``library_conversation()`` maps one onto openai-harmony objects (an
  independent, deliberately plain restatement of the mapping documented in ``serve/harmony/render.py``) so the
  library renders the golden prompt.
- ``SEQUENCES``: model outputs in harmony text (special tokens literal) with the result our parser must give.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
import functools
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Sequence

# The vocabulary gptoss ships as package data (one copy in the repository; its SHA-256 is checked below).
FIXTURES = Path(__file__).resolve().parent.parent / "gptoss_cli" / "vocab"
O200K_FILE = FIXTURES / "o200k_base.tiktoken"
O200K_SHA256 = "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d"
DATE = "2026-11-28"

_O200K_PATTERN = "|".join(
    [
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""\p{N}{1,3}""",
        r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
        r"""\s*[\r\n]+""",
        r"""\s+(?!\S)""",
        r"""\s+""",
    ]
)
_NAMED_SPECIALS = {
    "<|startoftext|>": 199998,
    "<|endoftext|>": 199999,
    "<|return|>": 200002,
    "<|constrain|>": 200003,
    "<|channel|>": 200005,
    "<|start|>": 200006,
    "<|end|>": 200007,
    "<|message|>": 200008,
    "<|call|>": 200012,
    "<|endofprompt|>": 200018,
}


def o200k_sha256() -> str:
    return hashlib.sha256(O200K_FILE.read_bytes()).hexdigest()


class O200kHarmonyTokenizer:
    """tiktoken o200k_base + the harmony specials; satisfies ``serve.engine.Tokenizer``."""

    def __init__(self) -> None:
        import tiktoken

        ranks: dict[bytes, int] = {}
        for line in O200K_FILE.read_bytes().splitlines():
            if line:
                token, rank = line.split()
                ranks[base64.b64decode(token)] = int(rank)
        specials = dict(_NAMED_SPECIALS)
        for i in (200000, 200001, 200004, 200009, 200010, 200011, *range(200013, 201088)):
            specials.setdefault(f"<|reserved_{i}|>", i)
        self.specials = specials
        self.encoding = tiktoken.Encoding("o200k_harmony", pat_str=_O200K_PATTERN, mergeable_ranks=ranks,
                                          special_tokens=specials)

    def encode(self, text: str) -> list[int]:
        return self.encoding.encode(text, allowed_special="all")

    def decode(self, ids: Sequence[int]) -> str:
        return self.encoding.decode(list(ids))

    def token_id(self, text: str) -> int | None:
        return self.specials.get(text)


@functools.lru_cache(maxsize=1)
def o200k_harmony() -> O200kHarmonyTokenizer:
    return O200kHarmonyTokenizer()


@functools.lru_cache(maxsize=1)
def reference_encoding():  # noqa: ANN201 - openai_harmony.HarmonyEncoding
    """openai-harmony's gpt-oss encoding, loaded from the fixture file (no network)."""
    from openai_harmony import HarmonyEncodingName, load_harmony_encoding

    assert o200k_sha256() == O200K_SHA256
    previous = os.environ.get("TIKTOKEN_ENCODINGS_BASE")
    os.environ["TIKTOKEN_ENCODINGS_BASE"] = str(FIXTURES)
    try:
        return load_harmony_encoding(HarmonyEncodingName.HARMONY_GPT_OSS)
    finally:
        if previous is None:
            os.environ.pop("TIKTOKEN_ENCODINGS_BASE", None)
        else:
            os.environ["TIKTOKEN_ENCODINGS_BASE"] = previous


# --------------------------------------------------------------------------------------------------------------
# Conversations
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    name: str
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] | None = None
    tool_choice: Any = None
    response_format: dict[str, Any] | None = None
    effort: str = "medium"
    knowledge_cutoff: str | None = "2024-06"
    identity: str | None = "You are ChatGPT, a large language model trained by OpenAI."
    # True where openai-harmony left to its own dropping rule would keep an earlier turn's analysis that we drop
    drops_earlier_analysis: bool = False


def fn(name: str, description: str | None, parameters: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"name": name}
    if description is not None:
        body["description"] = description
    if parameters is not None:
        body["parameters"] = parameters
    return {"type": "function", "function": body}


def obj(properties: dict[str, Any], required: Sequence[str] = (), **extra: Any) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": list(required), **extra}


WEATHER = fn(
    "get_weather",
    "Get current weather for a city.",
    obj(
        {
            "city": {"type": "string", "description": "City name"},
            "unit": {"type": "string", "enum": ["c", "f"], "default": "c"},
        },
        ["city"],
    ),
)
NO_PARAMS = fn("get_time", "Current time in UTC.")
EMPTY_PARAMS = fn("ping", "Check the service.", {"type": "object", "properties": {}})
NESTED = fn(
    "create_order",
    "Create an order.\nUse only for confirmed orders.",
    obj(
        {
            "customer": {
                "type": "object",
                "description": "Who orders",
                "properties": {"name": {"type": "string"}, "vip": {"type": "boolean", "default": False}},
                "required": ["name"],
            },
            "items": {
                "type": "array",
                "description": "Order lines",
                "items": obj({"sku": {"type": "string"}, "qty": {"type": "integer", "default": 1}}, ["sku"]),
            },
            "tags": {"type": "array", "items": {"type": "string"}},
            "notes": {"type": ["string", "null"]},
            "any_list": {"type": "array"},
        },
        ["customer", "items"],
    ),
)
KITCHEN = fn(
    "kitchensink",
    "A function with various complex schemas.",
    {
        "type": "object",
        "description": "params object",
        "properties": {
            "string": {"type": "string", "title": "STRING", "description": "A string", "examples": ["hello", "world"]},
            "string_nullable": {"type": "string", "nullable": True, "description": "A nullable string",
                                "default": "the default"},
            "string_enum": {"type": "string", "enum": ["a", "b", "c"]},
            "oneof_string_or_number": {
                "oneOf": [
                    {"type": "string", "default": "default_string_in_oneof"},
                    {"type": "number", "description": "numbers can happen too"},
                ],
                "description": "a oneof",
                "default": 20,
            },
            "ratio": {"type": "number", "default": 0.25},
            "big": {"type": "integer", "default": 10000000000000000},
            "tiny": {"type": "number", "default": 0.00001},
            "opts": {"type": "object", "default": {"a": [1, 2.5, None, True]}},
            "anything": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
            "level": {"type": "integer", "enum": [1, 2, 3]},
        },
    },
)
SEARCH = fn("search_docs", None, obj({"query": {"type": "string"}, "limit": {"type": "integer", "default": 5}},
                                    ["query"]))

USER = {"role": "user", "content": "What is the weather in Paris?"}


def call(call_id: str, name: str, arguments: Any) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def tool_round(reasoning_key: str = "reasoning") -> list[dict[str, Any]]:
    return [
        USER,
        {"role": "assistant", "content": None, reasoning_key: "Need weather; call tool.",
         "tool_calls": [call("call_1", "get_weather", '{"city":"Paris"}')]},
        {"role": "tool", "tool_call_id": "call_1", "content": '{"temp":21}'},
    ]


JSON_SCHEMA_FORMAT = {
    "type": "json_schema",
    "json_schema": {
        "name": "shopping_list",
        "description": "Items to buy",
        "schema": {"type": "object", "properties": {"items": {"type": "array", "items": {"type": "string"}}},
                   "required": ["items"]},
        "strict": True,
    },
}

CONVERSATIONS: list[Case] = [
    Case("user_only", [{"role": "user", "content": "Hello!"}]),
    Case("system_user", [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "Hi"}]),
    Case("developer_user", [{"role": "developer", "content": "Use a friendly tone."}, {"role": "user", "content": "Hi"}]),
    Case("two_system_messages", [{"role": "system", "content": "Rule one."}, {"role": "developer", "content": "Rule two."},
                                 {"role": "user", "content": "Go"}]),
    Case("effort_low", [{"role": "user", "content": "2+2?"}], effort="low"),
    Case("effort_high", [{"role": "system", "content": "Think hard."}, {"role": "user", "content": "Prove it."}],
         effort="high"),
    Case("no_cutoff_custom_identity", [{"role": "user", "content": "Who are you?"}], knowledge_cutoff=None,
         identity="You are a helpful assistant."),
    Case("content_parts", [{"role": "user", "content": [{"type": "text", "text": "Line one."},
                                                       {"type": "image_url", "image_url": {"url": "x"}},
                                                       {"type": "text", "text": "Line two."}]}]),
    Case("unicode_markdown", [{"role": "user", "content": "Grüße 👋 — 東京の天気は?\n\n```py\nprint('hi')\n```"}]),
    Case("tools_weather", [{"role": "system", "content": "Answer briefly."}, USER], tools=[WEATHER]),
    Case("tools_no_instructions", [USER], tools=[WEATHER, NO_PARAMS]),
    Case("tool_no_params_and_empty_params", [{"role": "user", "content": "Ping and time"}], tools=[NO_PARAMS, EMPTY_PARAMS]),
    Case("tool_nested_schema", [{"role": "user", "content": "Order 2 apples"}], tools=[NESTED]),
    Case("tool_kitchensink", [{"role": "user", "content": "Try it"}], tools=[KITCHEN]),
    Case("tool_without_description", [{"role": "user", "content": "Find docs"}], tools=[SEARCH]),
    Case("tool_choice_none", [USER], tools=[WEATHER], tool_choice="none"),
    Case("tool_choice_auto", [USER], tools=[WEATHER], tool_choice="auto"),
    Case("tool_choice_required", [{"role": "system", "content": "Be exact."}, USER], tools=[WEATHER, NO_PARAMS],
         tool_choice="required"),
    Case("tool_choice_named", [USER], tools=[WEATHER, NO_PARAMS],
         tool_choice={"type": "function", "function": {"name": "get_weather"}}),
    Case("response_format_json_schema", [{"role": "system", "content": "You are a shopping assistant."},
                                         {"role": "user", "content": "Coffee, soda, eggs"}],
         response_format=JSON_SCHEMA_FORMAT),
    Case("response_format_schema_only", [{"role": "user", "content": "List"}],
         response_format={"type": "json_schema", "json_schema": {"name": "out", "schema": {"type": "object"}}}),
    Case("response_format_with_tools", [{"role": "system", "content": "Be precise."}, USER], tools=[WEATHER],
         response_format=JSON_SCHEMA_FORMAT),
    Case("response_format_json_object", [{"role": "user", "content": "Give JSON"}],
         response_format={"type": "json_object"}),
    Case("response_format_text", [{"role": "user", "content": "Plain"}], response_format={"type": "text"}),
    Case("multi_turn", [{"role": "user", "content": "What is 2 + 2?"}, {"role": "assistant", "content": "4"},
                        {"role": "user", "content": "And 3 + 5?"}]),
    Case("multi_turn_reasoning_dropped", [
        {"role": "user", "content": "What is 2 + 2?"},
        {"role": "assistant", "content": "4", "reasoning": "Simple arithmetic."},
        {"role": "user", "content": "And 3 + 5?"}]),
    Case("tool_round_reasoning", tool_round("reasoning"), tools=[WEATHER]),
    Case("tool_round_reasoning_content", tool_round("reasoning_content"), tools=[WEATHER]),
    Case("tool_round_thinking", tool_round("thinking"), tools=[WEATHER]),
    Case("tool_round_then_answer", [*tool_round(), {"role": "assistant", "content": "It is 21 °C in Paris."},
                                    {"role": "user", "content": "Thanks! And Rome?"}], tools=[WEATHER]),
    Case("two_calls_names_by_id", [
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {"role": "assistant", "content": None, "reasoning": "Two cities.",
         "tool_calls": [call("call_a", "get_weather", '{"city":"Paris"}'),
                        call("call_b", "get_time", "{}")]},
        {"role": "tool", "tool_call_id": "call_b", "content": "12:00"},
        {"role": "tool", "tool_call_id": "call_a", "content": '{"temp":21}'}], tools=[WEATHER, NO_PARAMS]),
    Case("tool_message_without_id", [
        USER, {"role": "assistant", "tool_calls": [call("x", "get_weather", '{"city":"Paris"}')]},
        {"role": "tool", "content": "sunny"}], tools=[WEATHER]),
    Case("preamble_with_calls", [
        USER, {"role": "assistant", "content": "Let me check the weather.", "reasoning": "Call it.",
               "tool_calls": [call("c1", "get_weather", '{"city":"Paris"}')]},
        {"role": "tool", "tool_call_id": "c1", "content": [{"type": "text", "text": '{"temp":21}'}]}],
         tools=[WEATHER]),
    Case("dify_think_block", [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "<think>\nUser greets.\n</think>\n\nHello! How can I help?"},
        {"role": "user", "content": "Tell me a joke"}]),
    Case("dify_think_in_tool_chain", [
        USER, {"role": "assistant", "content": "<think>Need the tool.</think>",
               "tool_calls": [call("c1", "get_weather", '{"city":"Paris"}')]},
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"}], tools=[WEATHER]),
    Case("arguments_as_dict", [
        USER, {"role": "assistant", "tool_calls": [call("c1", "get_weather", {"city": "Paris", "unit": "c"})]},
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"}], tools=[WEATHER]),
    Case("legacy_function_call", [
        USER, {"role": "assistant", "content": None, "function_call": {"name": "get_weather",
                                                                       "arguments": '{"city":"Paris"}'}},
        {"role": "function", "name": "get_weather", "content": "sunny"}], tools=[WEATHER]),
    Case("earlier_tool_chain_then_new_chain", [
        *tool_round(), {"role": "assistant", "content": "21 °C.", "reasoning": "Answer it."},
        {"role": "user", "content": "And Rome?"},
        {"role": "assistant", "reasoning": "Call again.", "tool_calls": [call("c2", "get_weather", '{"city":"Rome"}')]},
        {"role": "tool", "tool_call_id": "c2", "content": '{"temp":25}'}], tools=[WEATHER],
         drops_earlier_analysis=True),
    Case("two_answered_turns_with_reasoning", [
        {"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4", "reasoning": "add"},
        {"role": "user", "content": "3+5?"}, {"role": "assistant", "content": "8", "reasoning": "add again"},
        {"role": "user", "content": "Thanks"}], drops_earlier_analysis=True),
    Case("ends_with_assistant_final", [
        {"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4", "reasoning": "add"}]),
    Case("empty_assistant_and_tool_content", [
        {"role": "user", "content": "Hi"}, {"role": "assistant", "content": ""},
        {"role": "user", "content": [{"type": "text", "text": "Again"}]}]),
]


def instructions_for(case: Case) -> str | None:
    from gptoss_cli.serve.harmony.render import JSON_OBJECT_INSTRUCTION, NAMED_TOOL_INSTRUCTION, REQUIRED_TOOL_INSTRUCTION

    texts = [m["content"] for m in case.messages if m["role"] in ("system", "developer")]
    if case.tools and case.tool_choice == "required":
        texts.append(REQUIRED_TOOL_INSTRUCTION)
    if case.tools and isinstance(case.tool_choice, dict):
        texts.append(NAMED_TOOL_INSTRUCTION.format(name=case.tool_choice["function"]["name"]))
    if case.response_format and case.response_format["type"] == "json_object":
        texts.append(JSON_OBJECT_INSTRUCTION)
    return "\n\n".join(texts) if texts else None


def _text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "\n".join(p["text"] for p in content if p.get("type") == "text")


def _library_tools(case: Case) -> list[Any]:
    from openai_harmony import ToolDescription

    if not case.tools or case.tool_choice == "none":
        return []
    out = []
    for tool in case.tools:
        f = tool["function"]
        params = f.get("parameters")
        out.append(ToolDescription.new(f["name"], f.get("description") or "",
                                       parameters=params if params and params.get("properties") else None))
    return out


def _response_format_text(case: Case) -> str | None:
    rf = case.response_format
    if not rf or rf["type"] != "json_schema":
        return None
    spec = rf["json_schema"]
    desc = f"// {spec['description']}\n" if spec.get("description") else ""
    return f"# Response Formats\n\n## {spec['name']}\n\n{desc}{json.dumps(spec['schema'], separators=(',', ':'))}"


def library_conversation(case: Case, *, keep_all_reasoning: bool = False):  # noqa: ANN201, C901
    """The case as an openai-harmony ``Conversation`` (see the module docstring)."""
    from openai_harmony import (Author, Conversation, DeveloperContent, Message, ReasoningEffort, Role,
                                SystemContent, TextContent)

    system = SystemContent(model_identity=case.identity, knowledge_cutoff=case.knowledge_cutoff,
                           reasoning_effort=ReasoningEffort(case.effort.capitalize()), conversation_start_date=DATE)
    msgs = [Message.from_role_and_content(Role.SYSTEM, system)]
    developer = DeveloperContent.new()
    instructions, tools, formats = instructions_for(case), _library_tools(case), _response_format_text(case)
    if instructions:
        developer = developer.with_instructions(instructions)
    if tools:
        developer = developer.with_function_tools(tools)
    if instructions or tools or formats:
        dev = Message.from_role_and_content(Role.DEVELOPER, developer)
        if formats:
            dev = dev.adding_content(TextContent(text=("\n\n" if instructions or tools else "") + formats))
        msgs.append(dev)
    last_user = max(i for i, m in enumerate(case.messages) if m["role"] == "user")
    names: dict[str, str] = {}
    last_name = None
    for i, m in enumerate(case.messages):
        role = m["role"]
        if role == "user":
            msgs.append(Message.from_role_and_content(Role.USER, _text(m["content"])))
        elif role == "assistant":
            content = _text(m.get("content"))
            reasoning = m.get("reasoning") or m.get("reasoning_content") or m.get("thinking")
            if "<think>" in content:
                think, _, content = content.partition("</think>")
                reasoning = reasoning or think.replace("<think>", "").strip()
                content = content.lstrip("\n")
            if reasoning and (keep_all_reasoning or i > last_user):
                msgs.append(Message.from_role_and_content(Role.ASSISTANT, reasoning).with_channel("analysis"))
            calls = list(m.get("tool_calls") or [])
            if m.get("function_call"):
                calls.append({"function": m["function_call"]})
            if not calls:
                if content:
                    msgs.append(Message.from_role_and_content(Role.ASSISTANT, content).with_channel("final"))
                continue
            if content:
                msgs.append(Message.from_role_and_content(Role.ASSISTANT, content).with_channel("commentary"))
            for c in calls:
                args = c["function"]["arguments"]
                args = args if isinstance(args, str) else json.dumps(args)
                last_name = c["function"]["name"]
                if "id" in c:
                    names[c["id"]] = last_name
                msgs.append(Message.from_role_and_content(Role.ASSISTANT, args).with_channel("commentary")
                            .with_recipient(f"functions.{last_name}").with_content_type("<|constrain|>json"))
        elif role in ("tool", "function"):
            name = names.get(m.get("tool_call_id", "")) or m.get("name") or last_name
            msgs.append(Message.from_author_and_content(Author.new(Role.TOOL, f"functions.{name}"), _text(m["content"]))
                        .with_channel("commentary").with_recipient("assistant"))
    return Conversation.from_messages(msgs)


# --------------------------------------------------------------------------------------------------------------
# Generated token sequences
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Seq:
    """Model output (special tokens as literal text) and what our parser must make of it."""

    name: str
    text: str
    content: str = ""
    reasoning: str = ""
    calls: tuple[tuple[str, str], ...] = ()  # (name, arguments)
    finish: str | None = "stop"
    # how openai-harmony's StreamableParser(strict=False) relates: "same" messages, "raises", or "differs"
    # (it keeps markup in the text, or reads the header differently); see ``why``
    library: str = "same"
    why: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


A, F = "<|channel|>analysis<|message|>", "<|start|>assistant<|channel|>final<|message|>"
WEATHER_CALL = '<|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>'

SEQUENCES: list[Seq] = [
    # well-formed
    Seq("analysis_final", f"{A}User greets. Reply.<|end|>{F}Hello! How can I help?<|return|>",
        content="Hello! How can I help?", reasoning="User greets. Reply."),
    Seq("final_only", "<|channel|>final<|message|>Just the answer.<|return|>", content="Just the answer."),
    Seq("tool_call_channel_position", f'{A}Need weather.<|end|>{WEATHER_CALL}{{"city":"Paris"}}<|call|>',
        reasoning="Need weather.", calls=(("get_weather", '{"city":"Paris"}'),), finish="tool_calls"),
    Seq("tool_call_role_position",
        f'{A}Need weather.<|end|><|start|>assistant to=functions.get_weather<|channel|>commentary json<|message|>'
        '{"city": "Paris", "unit": "c"}<|call|>',
        reasoning="Need weather.", calls=(("get_weather", '{"city": "Paris", "unit": "c"}'),), finish="tool_calls"),
    Seq("tool_call_first_message", '<|channel|>commentary to=functions.get_time <|constrain|>json<|message|>{}<|call|>',
        calls=(("get_time", "{}"),), finish="tool_calls"),
    Seq("constrain_adjacent",
        f'{A}x<|end|><|start|>assistant<|channel|>commentary to=functions.get_weather<|constrain|>json<|message|>'
        '{"latitude":48.8566,"longitude":2.3522}<|call|>',
        reasoning="x", calls=(("get_weather", '{"latitude":48.8566,"longitude":2.3522}'),), finish="tool_calls"),
    Seq("preamble_then_call",
        f'{A}Plan.<|end|><|start|>assistant<|channel|>commentary<|message|>Checking the weather now.<|end|>'
        f'{WEATHER_CALL}{{"city":"Rome"}}<|call|>',
        reasoning="Plan.", content="Checking the weather now.", calls=(("get_weather", '{"city":"Rome"}'),),
        finish="tool_calls"),
    Seq("several_analysis", f"{A}First thought.<|end|><|start|>assistant{A}Second thought.<|end|>{F}Done.<|return|>",
        reasoning="First thought.\n\nSecond thought.", content="Done."),
    Seq("unicode", f"{A}Überlegung: 東京 ☀️<|end|>{F}Grüße aus Tōkyō 👋 — ça va?<|return|>",
        reasoning="Überlegung: 東京 ☀️", content="Grüße aus Tōkyō 👋 — ça va?"),
    Seq("markdown_newlines", f"{A}List.<|end|>{F}# Title\n\n- a\n- b\n\n```py\nprint(1)\n```<|return|>",
        reasoning="List.", content="# Title\n\n- a\n- b\n\n```py\nprint(1)\n```"),
    Seq("length_inside_analysis", f"{A}The user asks about the weather and I should", reasoning=(
        "The user asks about the weather and I should"), finish=None),
    Seq("length_inside_final", f"{A}Short.<|end|>{F}The answer is", reasoning="Short.", content="The answer is",
        finish=None),
    Seq("final_ended_with_end", f"{A}r<|end|>{F}ok<|end|>", reasoning="r", content="ok", finish=None),
    Seq("tool_call_unicode_args", f'{A}x<|end|>{WEATHER_CALL}{{"city":"Zürich","note":"😀 \\"q\\""}}<|call|>',
        reasoning="x", calls=(("get_weather", '{"city":"Zürich","note":"😀 \\"q\\""}'),), finish="tool_calls"),
    Seq("builtin_python_call", f"{A}Compute.<|end|><|start|>assistant<|channel|>analysis to=python code<|message|>"
        "print(2**10)<|call|>", reasoning="Compute.\n\nprint(2**10)", finish="stop"),
    Seq("function_call_in_analysis", '<|channel|>analysis to=functions.get_time json<|message|>{}<|call|>',
        calls=(("get_time", "{}"),), finish="tool_calls"),
    Seq("no_channel_header", "<|message|>Hello there.<|return|>", content="Hello there."),
    Seq("refusal_without_markup", "I'm sorry, but I can't help with that.<|return|>",
        content="I'm sorry, but I can't help with that."),
    Seq("text_before_header", f"I must refuse<|end|><|start|>assistant{A}We must refuse<|end|>"
        f"{F}I'm sorry, but I can't help with that.<|return|>",
        content="I must refuse\n\nI'm sorry, but I can't help with that.", reasoning="We must refuse"),
    Seq("channel_without_message_token", f"<|channel|>analysis I must refuse<|end|>{F}No.<|return|>",
        reasoning="I must refuse", content="No."),
    Seq("missing_message_before_tool_call",
        "... Let's use the tool.<|end|><|start|>assistant to=functions.get_weather<|channel|>commentary json"
        '<|message|>{"location": "Tokyo"}<|call|>',
        content="... Let's use the tool.", calls=(("get_weather", '{"location": "Tokyo"}'),), finish="tool_calls"),
    Seq("stop_inside_header", f"{A}r<|end|><|start|>assistant<|channel|>final<|return|>", reasoning="r"),
    Seq("stop_inside_first_header", "<|channel|>final<|return|>", library="differs",
        why="records an empty final message; we record nothing"),
    Seq("short_reply_without_markup", "Hi!<|return|>", content="Hi!"),
    # malformed: openai-harmony raises
    Seq("end_then_channel_without_start", f"{A}think<|end|><|channel|>final<|message|>Answer.<|return|>",
        reasoning="think", content="Answer.", library="raises", why="token after <|end|> is not <|start|>"),
    Seq("end_then_plain_text", f"{A}think<|end|>The answer is 4.<|return|>", reasoning="think",
        content="The answer is 4.", library="raises", why="token after <|end|> is not <|start|>"),
    Seq("truncated_header", f"{A}x<|end|><|start|>assistant<|channel|>fin", reasoning="x", finish=None,
        library="raises", why="EOS inside a header"),
    Seq("truncated_tool_header", f"{A}x<|end|><|start|>assistant<|channel|>commentary to=functions.get_wea",
        reasoning="x", finish=None, library="raises", why="EOS inside a header"),
    Seq("glued_json_without_message",
        '<|channel|>commentary to=functions.get_weather json{"city":"Paris"}<|call|>',
        calls=(("get_weather", '{"city":"Paris"}'),), finish="tool_calls", library="differs",
        why="no <|message|>: it keeps the JSON as header words"),
    Seq("call_without_message", "<|channel|>commentary to=functions.get_time<|call|>", calls=(("get_time", "{}"),),
        finish="tool_calls", library="differs", why="no <|message|>: it records a message with empty text"),
    Seq("header_words_after_end", f"{A}think<|end|>final Here it is, done.<|return|>", reasoning="think",
        content="Here it is, done.", library="raises", why="token after <|end|> is not <|start|>"),
    # malformed: openai-harmony lets markup into the text
    Seq("channel_inside_content", f"{A}think<|channel|>final<|message|>Answer.<|return|>", reasoning="think",
        content="Answer.", library="differs", why="keeps '<|channel|>final<|message|>Answer.' in the analysis text"),
    Seq("start_inside_content", f"{A}think<|start|>assistant<|channel|>final<|message|>Answer.<|return|>",
        reasoning="think", content="Answer.", library="differs", why="keeps the second header in the analysis text"),
    Seq("message_token_inside_content", "<|channel|>final<|message|>Hel<|message|>lo<|return|>", content="Hello",
        library="differs", why="keeps '<|message|>' in the text"),
    Seq("reserved_token_inside_content", "<|channel|>final<|message|>Hel<|reserved_200013|>lo<|return|>",
        content="Hello", library="differs", why="keeps '<|reserved_200013|>' in the text"),
    Seq("hallucinated_user_turn", f"{F}Hi.<|end|><|start|>user<|message|>thanks<|end|>{F}More.<|return|>",
        content="Hi.", library="differs", why="reports the user turn the model wrote and goes on; we stop there"),
    Seq("hallucinated_tool_result", f'{A}x<|end|>{WEATHER_CALL}{{"city":"Paris"}}<|end|><|start|>functions.get_weather '
        'to=assistant<|channel|>commentary<|message|>{"temp":21}<|end|>',
        reasoning="x", calls=(("get_weather", '{"city":"Paris"}'),), finish="tool_calls", library="differs",
        why="reports the tool result the model wrote; we end the turn at its header"),
    Seq("bare_recipient_is_a_function", "<|channel|>commentary to=get_weather json<|message|>{}<|call|>",
        calls=(("get_weather", "{}"),), finish="tool_calls"),
    Seq("call_after_final", "<|channel|>final<|message|>Hi<|call|>", content="Hi", finish="stop"),
    Seq("endoftext_stops", "<|channel|>final<|message|>Hi<|endoftext|>more", content="Hi", library="differs",
        why="<|endoftext|> is not one of its stop tokens"),
    Seq("tokens_after_return", "<|channel|>final<|message|>Hi<|return|><|start|>assistant<|channel|>final"
        "<|message|>again<|return|>", content="Hi", library="differs", why="it goes on parsing after <|return|>"),
    Seq("lone_final_word_header", "final<|message|>Hi<|return|>", content="Hi", library="differs",
        why="reads the lone word 'final' as a recipient"),
    Seq("glued_assistantfinal", f"{A}r<|end|><|start|>assistantfinal<|message|>Hi<|return|>", reasoning="r",
        content="Hi", library="raises", why="'assistantfinal' is an unknown role"),
    Seq("double_start", f"<|start|>assistant{A}r<|end|>{F}ok<|return|>", reasoning="r", content="ok",
        library="differs", why="reads '<|start|>assistant' in the first header as a recipient"),
    # header words written as text tokens (issue 12 item 3)
    Seq("header_words_as_text", "analysisLet me think.assistantfinalThe answer is 4.<|return|>",
        reasoning="Let me think.", content="The answer is 4.", library="differs",
        why="keeps all of it, header words included, as the text of one message without a channel"),
    Seq("short_header_words_as_text", "analysisOk.assistantfinal4.<|return|>", reasoning="Ok.", content="4.",
        library="differs", why="keeps all of it, header words included, as the text of one message"),
    Seq("assistantfinal_inside_analysis", f"{A}thinking...assistantfinal Hello<|return|>", reasoning="thinking...",
        content="Hello", library="differs", why="keeps 'assistantfinal Hello' in the analysis text"),
    Seq("assistant_word_before_channel", f"{A}thinking.assistant<|channel|>final<|message|>Hi<|return|>",
        reasoning="thinking.", content="Hi", library="differs", why="keeps the second header in the analysis text"),
    Seq("assistantanalysis_inside_analysis", f"{A}Hmm.assistantanalysisMore thought.assistantfinalDone.<|return|>",
        reasoning="Hmm.\n\nMore thought.", content="Done.", library="differs",
        why="keeps the glued headers in the analysis text"),
    Seq("tool_call_header_as_text",
        f'{A}Need tool.assistantcommentary to=functions.get_weather json{{"city":"Paris"}}<|call|>',
        reasoning="Need tool.", calls=(("get_weather", '{"city":"Paris"}'),), finish="tool_calls", library="differs",
        why="keeps the glued tool-call header and arguments in the analysis text"),
    Seq("assistant_word_in_prose", "<|channel|>final<|message|>As your assistant, finally: yes. An assistant"
        "<|return|>", content="As your assistant, finally: yes. An assistant"),
]
