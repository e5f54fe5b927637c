"""Synthetic harmony conversations that teach the demo model its manners (pure Python, no torch).

Every example is an OpenAI-style conversation (messages + tools + reasoning effort) plus the harmony completion the
model should produce for it: ``analysis`` then ``final`` then ``<|return|>``, or ``analysis`` then a
``to=functions.NAME`` call with JSON arguments then ``<|call|>``. Prompts are rendered by
``gptoss_cli.serve.harmony.render_chat`` -- exactly what the server sends -- and, while that renderer is not
available, by ``render_fallback`` below, which follows the harmony format (reference §2) byte for byte (checked
against openai-harmony on this corpus; the only difference from ``render_chat`` is ``json`` instead of
``<|constrain|>json`` in replayed tool calls).

The patterns are few and templated on purpose: a tiny model learns them in seconds. Plain answers are one canned
reply per kind of message (greeting, identity, question needing live data without tools, any other question); with
tools on offer, a question of a tool's kind gets a call to that tool with the value from the question as argument.
Tiny models trained for seconds do not learn to copy that value reliably (it is the one hard token); the demo then
calls the right tool with a plausible value.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from typing import Any, Sequence

TOPICS = (
    "cats dogs music rivers mountains python coffee tea chess bicycles rain stars oceans forests bread cheese "
    "volcanoes robots gardens trains planets birds bees clouds deserts islands libraries maps bridges castles "
    "dinosaurs rockets penguins tigers whales apples honey jazz poetry painting football tennis snow glaciers"
).split()
CITIES = (
    "Paris London Tokyo Berlin Madrid Rome Oslo Cairo Lima Sydney Toronto Boston Chicago Seoul Delhi Dubai "
    "Vienna Prague Lisbon Dublin Athens Beijing Nairobi Zurich Munich Amsterdam Stockholm Helsinki Warsaw Denver"
).split()
SYMBOLS = "AAPL MSFT NVDA GOOG AMZN TSLA META IBM INTC ORCL".split()
GREETINGS = ("Hello!", "Hi", "hi there", "ping", "Hey, how are you?", "Good morning!", "Hello, who are you?", "test")
INSTRUCTIONS = (
    "Answer briefly.",
    "You are a helpful assistant.",
    "Be concise and friendly.",
    "Reply in English.",
    "You are a helpful assistant. Keep answers short.",
)
FILLER = (
    "please quickly explain why how when where which the a of to in for my your this that it is are was could "
    "would should maybe really some any more less best good new old big small"
).split()
_SYLLABLES = "ka lo mi nu pe ra si to vu ze ban dor fel gim hup jax kor lin mur nex".split()

TOPIC_QUESTIONS = (
    "What is {t}?", "Tell me about {t}.", "Can you explain {t}?", "Write a short note about {t}.",
    "Why do people like {t}?", "Give me a fact about {t}.", "What do you know about {t}?", "Describe {t}.",
)
IDENTITY_QUESTIONS = ("Who are you?", "What are you?", "What model is this?", "Are you a robot?", "What is your name?")
# category → (analysis, final); the model learns to tell the categories apart, not to recite facts it cannot know
REPLIES = {
    "greeting": (
        "The user greets me. I should reply politely.",
        "Hello! I am the gptoss demo model. How can I help you today?",
    ),
    "identity": (
        "The user asks who I am. I am a small demo model.",
        "I am a tiny demo model served by gptoss. I answer in the harmony format.",
    ),
    "no_tool": (
        "The user wants live data, but no tool is available.",
        "I cannot look that up because no tool is available. Offer me a tool and ask again.",
    ),
    "question": (
        "The user asks a question. A short answer is best.",
        "That is a good question. I am a tiny demo model, so my answers are short.",
    ),
    "after_tool": (
        "The tool answered. I will tell the user.",
        "Done. The tool returned the result shown above.",
    ),
}


def _tool(name: str, description: str, params: dict[str, Any], required: Sequence[str]) -> dict[str, Any]:
    schema = {"type": "object", "properties": params, "required": list(required)}
    return {"type": "function", "function": {"name": name, "description": description, "parameters": schema}}


TOOLS: dict[str, dict[str, Any]] = {
    "get_weather": _tool(
        "get_weather", "Get the current weather for a city.",
        {"city": {"type": "string", "description": "City name"},
         "unit": {"type": "string", "enum": ["c", "f"], "default": "c"}},
        ["city"],
    ),
    "get_time": _tool(
        "get_time", "Get the local time in a city.", {"city": {"type": "string", "description": "City name"}},
        ["city"],
    ),
    "search_web": _tool(
        "search_web", "Search the web.", {"query": {"type": "string", "description": "What to search for"}},
        ["query"],
    ),
    "get_stock_price": _tool(
        "get_stock_price", "Get the latest stock price.",
        {"symbol": {"type": "string", "description": "Ticker symbol"}}, ["symbol"],
    ),
}
# tool name → (argument name, question templates, value kind)
TOOL_QUESTIONS: dict[str, tuple[str, tuple[str, ...], str]] = {
    "get_weather": ("city", ("What's the weather in {v}?", "What is the weather like in {v} today?",
                             "Is it raining in {v}?", "How warm is it in {v}?"), "city"),
    "get_time": ("city", ("What time is it in {v}?", "Tell me the local time in {v}."), "city"),
    "search_web": ("query", ("Search the web for {v}.", "Look up {v} online.", "Find news about {v}."), "topic"),
    "get_stock_price": ("symbol", ("What is the stock price of {v}?", "How is {v} trading today?"), "symbol"),
}


@dataclass(frozen=True)
class Example:
    """One training conversation: what the server would be sent, and the completion the model should produce."""

    messages: tuple[dict[str, Any], ...]
    tools: tuple[dict[str, Any], ...]
    effort: str
    completion: str
    meta: dict[str, str] = field(default_factory=dict)


def chat_completion(analysis: str, final: str) -> str:
    return (
        f"<|channel|>analysis<|message|>{analysis}<|end|>"
        f"<|start|>assistant<|channel|>final<|message|>{final}<|return|>"
    )


def call_completion(analysis: str, name: str, args: str) -> str:
    return (
        f"<|channel|>analysis<|message|>{analysis}<|end|>"
        f"<|start|>assistant to=functions.{name}<|channel|>commentary json<|message|>{args}<|call|>"
    )


def _pseudo_word(rng: random.Random) -> str:
    return "".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(2, 3)))


def _value(rng: random.Random, kind: str) -> str:
    if kind == "city":
        return rng.choice(CITIES)
    if kind == "symbol":
        return rng.choice(SYMBOLS)
    return rng.choice(TOPICS)


def _plain_turn(rng: random.Random, *, tools_offered: bool = False) -> tuple[str, str, str]:
    """(user text, analysis, final) for a message answered without calling a tool."""
    roll = rng.random()
    while tools_offered and 0.3 <= roll < 0.45:  # "no tool is available" makes no sense with tools on offer
        roll = rng.random()
    if roll < 0.2:
        return (rng.choice(GREETINGS), *REPLIES["greeting"])
    if roll < 0.3:
        return (rng.choice(IDENTITY_QUESTIONS), *REPLIES["identity"])
    if roll < 0.45:
        _, templates, kind = TOOL_QUESTIONS[rng.choice(sorted(TOOL_QUESTIONS))]
        return (rng.choice(templates).format(v=_value(rng, kind)), *REPLIES["no_tool"])
    if roll < 0.6:
        words = [rng.choice(FILLER) for _ in range(rng.randint(2, 7))]
        return (" ".join(words).capitalize() + rng.choice("?.!"), *REPLIES["question"])
    topic = rng.choice(TOPICS) if rng.random() < 0.7 else _pseudo_word(rng)
    return (rng.choice(TOPIC_QUESTIONS).format(t=topic), *REPLIES["question"])


def _tool_turn(rng: random.Random, name: str) -> tuple[str, str, str, str]:
    """(user text, analysis, argument value, arguments JSON) for a question that needs tool ``name``."""
    arg, templates, kind = TOOL_QUESTIONS[name]
    value = _value(rng, kind)
    analysis = f"The user needs {name}. I will call the tool."
    return rng.choice(templates).format(v=value), analysis, value, json.dumps({arg: value}, separators=(",", ":"))


@dataclass(frozen=True)
class Setup:
    """What the system and developer messages say; examples drawn for one setup share that prompt prefix."""

    effort: str
    head: tuple[dict[str, Any], ...]  # an optional system/developer instruction message
    tools: tuple[dict[str, Any], ...]


def sample_setup(rng: random.Random) -> Setup:
    head: tuple[dict[str, Any], ...] = ()
    if rng.random() < 0.4:
        head = ({"role": rng.choice(("system", "developer")), "content": rng.choice(INSTRUCTIONS)},)
    tools: tuple[dict[str, Any], ...] = ()
    if rng.random() < 0.5:
        tools = tuple(TOOLS[n] for n in rng.sample(sorted(TOOLS), rng.choice((1, 1, 2))))
    return Setup(rng.choice(("low", "medium", "high")), head, tools)


def _tool_result(rng: random.Random, arg: str, value: str) -> str:
    extra = rng.choice((
        {"temperature": rng.randint(-10, 35), "unit": "c"}, {"result": "ok"}, {"time": f"{rng.randint(0, 23)}:00"},
        {"price": round(rng.uniform(10, 500), 2)}, {"status": "done", "items": rng.randint(0, 9)},
    ))
    return json.dumps({arg: value, **extra} if rng.random() < 0.5 else extra, separators=(",", ":"))


def sample_example(rng: random.Random, setup: Setup) -> Example:
    """Draw one conversation for ``setup``: plain chat, two-turn chat, tool call, or the answer after a tool result."""
    head, tools = list(setup.head), list(setup.tools)
    if tools:
        kind = rng.choices(("call", "after_tool", "plain_with_tools"), (50, 25, 25))[0]
    else:
        kind = rng.choices(("plain", "two_turn"), (70, 30))[0]
    if kind in ("plain", "plain_with_tools", "two_turn"):
        if kind == "two_turn":
            user0, _, final0 = _plain_turn(rng)
            head += [{"role": "user", "content": user0}, {"role": "assistant", "content": final0}]
        user, analysis, final = _plain_turn(rng, tools_offered=bool(tools))
        messages = [*head, {"role": "user", "content": user}]
        return Example(tuple(messages), setup.tools, setup.effort, chat_completion(analysis, final), {"kind": kind})
    name = rng.choice([t["function"]["name"] for t in tools])
    user, analysis, value, args = _tool_turn(rng, name)
    messages = [*head, {"role": "user", "content": user}]
    if kind == "call":
        meta = {"kind": kind, "tool": name, "args": args}
        return Example(tuple(messages), setup.tools, setup.effort, call_completion(analysis, name, args), meta)
    call = {"id": "call_demo", "type": "function", "function": {"name": name, "arguments": args}}
    assistant: dict[str, Any] = {"role": "assistant", "content": None, "tool_calls": [call]}
    if rng.random() < 0.5:
        assistant["reasoning_content"] = analysis
    result = _tool_result(rng, TOOL_QUESTIONS[name][0], value)
    messages += [assistant, {"role": "tool", "tool_call_id": "call_demo", "content": result}]
    return Example(tuple(messages), setup.tools, setup.effort, chat_completion(*REPLIES["after_tool"]), {"kind": kind})


# ---------------------------------------------------------------------------------------------------------------
# Rendering: the server's renderer when it exists, else a faithful fallback (harmony format, reference §2).


def render_prompt(example: Example, current_date: str) -> str:
    """The prompt the server would render for ``example`` (ends with ``<|start|>assistant``)."""
    try:
        from gptoss_cli.serve.harmony import RenderOptions, render_chat

        options = RenderOptions(reasoning_effort=example.effort, current_date=current_date)
        return render_chat(list(example.messages), tools=list(example.tools) or None, options=options)
    except NotImplementedError:
        return render_fallback(example.messages, example.tools, example.effort, current_date)


def render_fallback(
    messages: Sequence[dict[str, Any]], tools: Sequence[dict[str, Any]], effort: str, current_date: str
) -> str:
    system = (
        "You are ChatGPT, a large language model trained by OpenAI.\nKnowledge cutoff: 2024-06\n"
        f"Current date: {current_date}\n\nReasoning: {effort}\n\n"
        "# Valid channels: analysis, commentary, final. Channel must be included for every message."
    )
    if tools:
        system += "\nCalls to these tools must go to the commentary channel: 'functions'."
    out = [f"<|start|>system<|message|>{system}<|end|>"]
    instructions = "\n\n".join(m["content"] for m in messages if m["role"] in ("system", "developer"))
    sections = [f"# Instructions\n\n{instructions}"] if instructions else []
    if tools:
        sections.append(_tools_section(tools))
    if sections:
        out.append("<|start|>developer<|message|>" + "\n\n".join(sections) + "<|end|>")
    names: dict[str, str] = {}
    for m in messages:
        if m["role"] == "user":
            out.append(f"<|start|>user<|message|>{m['content']}<|end|>")
        elif m["role"] == "assistant" and m.get("tool_calls"):
            if m.get("reasoning_content"):
                out.append(f"<|start|>assistant<|channel|>analysis<|message|>{m['reasoning_content']}<|end|>")
            for call in m["tool_calls"]:
                fn = call["function"]
                names[call["id"]] = fn["name"]
                out.append(
                    f"<|start|>assistant to=functions.{fn['name']}<|channel|>commentary json<|message|>"
                    f"{fn['arguments']}<|call|>"
                )
        elif m["role"] == "assistant":
            out.append(f"<|start|>assistant<|channel|>final<|message|>{m['content']}<|end|>")
        elif m["role"] == "tool":
            name = names.get(m.get("tool_call_id", ""), "unknown")
            out.append(f"<|start|>functions.{name} to=assistant<|channel|>commentary<|message|>{m['content']}<|end|>")
    out.append("<|start|>assistant")
    return "".join(out)


def _tools_section(tools: Sequence[dict[str, Any]]) -> str:
    lines = ["# Tools", "", "## functions", "", "namespace functions {", ""]
    for tool in tools:
        fn = tool["function"]
        if fn.get("description"):
            lines.append(f"// {fn['description']}")
        props = (fn.get("parameters") or {}).get("properties") or {}
        if not props:
            lines += [f"type {fn['name']} = () => any;", ""]
            continue
        required = set((fn.get("parameters") or {}).get("required") or ())
        lines.append(f"type {fn['name']} = (_: {{")
        for pname, spec in props.items():
            if spec.get("description"):
                lines.append(f"// {spec['description']}")
            ptype = " | ".join(json.dumps(v) for v in spec["enum"]) if "enum" in spec else spec.get("type", "any")
            line = f"{pname}{'' if pname in required else '?'}: {ptype},"
            if "default" in spec:
                line += f" // default: {spec['default']}"
            lines.append(line)
        lines += ["}) => any;", ""]
    lines.append("} // namespace functions")
    return "\n".join(lines)


__all__ = ["TOOLS", "Example", "Setup", "render_fallback", "render_prompt", "sample_example", "sample_setup"]
