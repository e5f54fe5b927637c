"""Synthetic harmony conversations that teach the demo model its manners (pure Python, no torch).

Every example is an OpenAI-style conversation (messages + tools + reasoning effort) plus the harmony completion the
model should produce for it: ``analysis`` then ``final`` then ``<|return|>``, or ``analysis`` then a
``to=functions.NAME`` call with JSON arguments then ``<|call|>``. Prompts are rendered by
``gptoss_cli.serve.harmony.render_chat`` -- exactly what the server sends. Used only to (re)build the shipped
demo model (``scripts/build_demo_model.py``) and to fingerprint the rendering it was trained on.

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


def render_prompt(example: Example, current_date: str) -> str:
    """The prompt the server renders for ``example`` (ends with ``<|start|>assistant``)."""
    from gptoss_cli.serve.harmony import RenderOptions, render_chat

    options = RenderOptions(reasoning_effort=example.effort, current_date=current_date)
    return render_chat(list(example.messages), tools=list(example.tools) or None, options=options)


def prompt_fingerprint(current_date: str) -> str:
    """Hash of a few rendered training prompts: it changes when the server's harmony renderer changes, and then the
    shipped demo model (trained on the old rendering) must be rebuilt."""
    import hashlib

    rng = random.Random(1234)
    text = "".join(render_prompt(sample_example(rng, sample_setup(rng)), current_date) for _ in range(8))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


__all__ = ["TOOLS", "Example", "Setup", "prompt_fingerprint", "render_prompt", "sample_example", "sample_setup"]
