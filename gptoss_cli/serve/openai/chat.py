"""Chat completions: request → harmony prompt + plan; outcome → response body or stream chunks.

- Messages are normalised for the harmony renderer: content-part lists become text (non-text parts are a 400: the
  model reads text only), tool-call arguments become JSON text, legacy ``function`` messages become ``tool`` ones.
- ``tools`` (and legacy ``functions``) are declared to the model unless ``tool_choice`` is ``none``.
- ``tool_choice`` ``required`` / a named function: the server forces the start of the assistant message (a prefill of
  ``<|channel|>commentary to=functions`` — the model writes ``.name`` — or the whole header for a named choice), so
  the first thing the model writes is the call. ``auto`` leaves the choice to the model.
- ``response_format``: rendered into the developer message by the harmony renderer and enforced on the final channel
  by validate-and-retry (``jsonformat.py``); streamed requests with a JSON format are generated whole, checked, then
  sent as chunks.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass
from typing import Any, AsyncIterator

from gptoss_cli.serve.errors import BadRequest
from gptoss_cli.serve.generation.run import Generation, GenerationPlan, Outcome
from gptoss_cli.serve.harmony import render_chat
from gptoss_cli.serve.harmony.render import defang
from gptoss_cli.serve.generation.response_format import JsonCheck, make_check
from gptoss_cli.serve.openai.params import (
    ModelInfo,
    check_unsupported,
    render_options,
    resolve_model,
    sampling_params,
    stop_strings,
)
from gptoss_cli.serve.openai.protocol import (
    AssistantMessage,
    ChatChoice,
    ChatCompletion,
    ChatCompletionRequest,
    ChatMessage,
    ContentPart,
    FunctionCallOut,
    NamedToolChoice,
    Tool,
    ToolCallOut,
    Usage,
)
from gptoss_cli.serve.settings import ServeSettings

_TEXT_PARTS = ("text", "input_text")


@dataclass(frozen=True)
class ChatPlan:
    generation: GenerationPlan
    model: str
    stream: bool
    include_usage: bool
    json_check: JsonCheck | None


def new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(12)}"


# ------------------------------------------------------------------------------------------------------ planning


def plan_chat(req: ChatCompletionRequest, settings: ServeSettings, info: ModelInfo) -> ChatPlan:
    """Validate the request and turn it into token ids and sampling parameters (400/404 on bad input)."""
    check_unsupported(req)
    model = resolve_model(req.model, settings)
    tools, choice = tools_and_choice(req)
    response_format, check = response_format_of(req)
    try:
        prompt = render_chat(
            normalise_messages(req.messages),
            tools=tools if choice != "none" else None,
            tool_choice=choice,
            response_format=response_format,
            options=render_options(req, settings),
        )
    except ValueError as exc:
        raise BadRequest(f"Invalid messages: {exc}", param="messages") from None
    tokenizer = info.tokenizer
    prefill = prefill_for(choice)
    prefill_ids = tokenizer.encode(prefill) if prefill else []
    prompt_ids = tokenizer.encode(prompt) + prefill_ids
    params = sampling_params(
        req,
        info,
        prompt_tokens=len(prompt_ids),
        max_tokens=req.max_completion_tokens or req.max_tokens,
        param="messages",
    )
    include_usage = bool(req.stream_options and req.stream_options.include_usage)
    plan = GenerationPlan(prompt_ids, params, tuple(prefill_ids), stop_strings(req.stop))
    return ChatPlan(plan, model, bool(req.stream), include_usage, check)


def normalise_messages(messages: list[ChatMessage]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i, msg in enumerate(messages):
        d = msg.model_dump(exclude_none=True)
        if isinstance(msg.content, list):
            d["content"] = _join_parts(msg.content, i)
        if msg.tool_calls:
            d["tool_calls"] = [
                {
                    "id": tc.id or f"call_{i}_{j}",
                    "type": "function",
                    "function": {"name": tc.function.name, "arguments": _arguments_text(tc.function.arguments)},
                }
                for j, tc in enumerate(msg.tool_calls)
            ]
        if msg.role == "function":
            d["role"] = "tool"
        out.append(d)
    return out


def _join_parts(parts: list[ContentPart], index: int) -> str:
    texts: list[str] = []
    for part in parts:
        if part.type not in _TEXT_PARTS:
            raise BadRequest(
                f"Content part type {part.type!r} is not supported: this model reads text only.",
                param=f"messages[{index}].content",
            )
        texts.append(part.text or "")
    return "\n".join(texts)


def _arguments_text(arguments: str | dict[str, Any] | None) -> str:
    if arguments is None:
        return "{}"
    if isinstance(arguments, str):
        return arguments
    return json.dumps(arguments, ensure_ascii=False)


def tools_and_choice(req: ChatCompletionRequest) -> tuple[list[dict[str, Any]] | None, Any]:
    """Tool definitions as dicts and the tool choice as ``"auto" | "none" | "required" | {function: {name}}``."""
    tools = req.tools
    if tools is None and req.functions:
        tools = [Tool(function=f) for f in req.functions]
    choice: Any = req.tool_choice
    if choice is None and req.function_call is not None:
        fc = req.function_call
        choice = fc if isinstance(fc, str) else NamedToolChoice(function=fc)
    names = [t.function.name for t in tools or []]
    if isinstance(choice, NamedToolChoice):
        if choice.function.name not in names:
            raise BadRequest(
                f"tool_choice names function {choice.function.name!r}, which is not in tools.", param="tool_choice"
            )
        choice = {"type": "function", "function": {"name": choice.function.name}}
    elif choice == "required" and not names:
        raise BadRequest("tool_choice is 'required' but no tools were given.", param="tool_choice")
    elif choice is None:
        choice = "auto" if names else "none"
    dumped = [t.model_dump(exclude_none=True, by_alias=True) for t in tools] if tools else None
    return dumped, choice


def prefill_for(choice: Any) -> str:
    """Assistant-header text the server writes for the model when a tool call is mandatory (the client's function
    name is defanged: it reaches the model as text, never as a special token).

    The prefill ends where the model's own tokenizer puts a token boundary in the whole header: o200k splits
    ``to=functions.get_weather`` as ``to`` ``=`` ``functions`` ``.get`` ``_weather`` — the dot belongs to the
    name's first token — so ``required`` stops before the dot (a lone ``.`` token would push the model across a
    boundary it never saw in training), and a named choice forces the whole header, name and all, tokenised
    together."""
    if choice == "required":
        return "<|channel|>commentary to=functions"
    if isinstance(choice, dict):
        name = defang(choice["function"]["name"])
        return f"<|channel|>commentary to=functions.{name} <|constrain|>json<|message|>"
    return ""


def response_format_of(req: ChatCompletionRequest) -> tuple[dict[str, Any] | None, JsonCheck | None]:
    rf = req.response_format
    if rf is None or rf.type == "text":
        return None, None
    if rf.type == "json_object":
        return {"type": "json_object"}, make_check(None)
    if rf.json_schema is None:
        raise BadRequest("response_format of type json_schema needs a json_schema object.", param="response_format")
    return rf.model_dump(exclude_none=True, by_alias=True), make_check(rf.json_schema.schema_ or {})


# ------------------------------------------------------------------------------------------------------ responses


def usage_of(prompt_tokens: int, completion_tokens: int) -> Usage:
    return Usage(
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        total_tokens=prompt_tokens + completion_tokens,
    )


def chat_completion(plan: ChatPlan, outcome: Outcome, *, completion_id: str, created: int) -> ChatCompletion:
    calls = [
        ToolCallOut(id=c.id, function=FunctionCallOut(name=c.name, arguments=c.arguments)) for c in outcome.tool_calls
    ]
    message = AssistantMessage(
        content=outcome.content if (outcome.content or not calls) else None,
        reasoning_content=outcome.reasoning or None,
        reasoning=outcome.reasoning or None,
        tool_calls=calls or None,
    )
    return ChatCompletion(
        id=completion_id,
        created=created,
        model=plan.model,
        choices=[ChatChoice(message=message, finish_reason=outcome.finish_reason)],  # type: ignore[arg-type]
        usage=usage_of(outcome.prompt_tokens, outcome.completion_tokens),
    )


class ChunkMaker:
    """Builds ``chat.completion.chunk`` payloads (plain dicts: this is the hot path)."""

    def __init__(self, model: str, completion_id: str | None = None) -> None:
        self.id = completion_id or new_id("chatcmpl")
        self.model = model
        self.created = int(time.time())

    def chunk(self, delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
        }

    def usage(self, prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [],
            "usage": usage_of(prompt_tokens, completion_tokens).model_dump(),
        }


async def stream_chunks(gen: Generation, maker: ChunkMaker, include_usage: bool) -> AsyncIterator[dict[str, Any]]:
    """Chunks for a started generation: role, then one chunk per delta, the finish chunk, the usage chunk."""
    yield maker.chunk({"role": "assistant", "content": ""})
    async for d in gen.deltas():
        if d.kind == "content" and d.text:
            yield maker.chunk({"content": d.text})
        elif d.kind == "reasoning" and d.text:
            yield maker.chunk({"reasoning_content": d.text, "reasoning": d.text})
        elif d.kind == "tool_call_start":
            call = {"index": d.index, "id": d.call_id, "type": "function",
                    "function": {"name": d.name, "arguments": ""}}
            yield maker.chunk({"tool_calls": [call]})
        elif d.kind == "tool_call_args" and d.text:
            yield maker.chunk({"tool_calls": [{"index": d.index, "function": {"arguments": d.text}}]})
    yield maker.chunk({}, gen.finish_reason or "stop")
    if include_usage:
        yield maker.usage(gen.prompt_tokens, gen.completion_tokens)


async def outcome_chunks(outcome: Outcome, maker: ChunkMaker, include_usage: bool) -> AsyncIterator[dict[str, Any]]:
    """Chunks for an outcome generated whole (streamed requests with a JSON response_format)."""
    yield maker.chunk({"role": "assistant", "content": ""})
    if outcome.reasoning:
        yield maker.chunk({"reasoning_content": outcome.reasoning, "reasoning": outcome.reasoning})
    if outcome.content:
        yield maker.chunk({"content": outcome.content})
    for i, call in enumerate(outcome.tool_calls):
        yield maker.chunk({"tool_calls": [{"index": i, "id": call.id, "type": "function",
                                           "function": {"name": call.name, "arguments": ""}}]})
        if call.arguments:
            yield maker.chunk({"tool_calls": [{"index": i, "function": {"arguments": call.arguments}}]})
    yield maker.chunk({}, outcome.finish_reason)
    if include_usage:
        yield maker.usage(outcome.prompt_tokens, outcome.completion_tokens)


__all__ = [
    "ChatPlan",
    "ChunkMaker",
    "chat_completion",
    "new_id",
    "normalise_messages",
    "outcome_chunks",
    "plan_chat",
    "prefill_for",
    "stream_chunks",
    "tools_and_choice",
]
