"""Legacy text completions (``POST /v1/completions``) for a harmony model.

gpt-oss is not a raw-continuation model: prompted without harmony it leaks ``analysis…assistantfinal…``. So the
prompt is sent as one **user message** in the harmony format and ``text`` is the final-channel answer (commentary
preambles included); the reasoning is returned beside it as ``reasoning_content`` / ``reasoning`` (in streams, as
chunks with empty ``text``, which also keeps idle proxies from closing the connection). ``echo`` prepends the prompt.
One prompt per request (a list must hold exactly one string); ``suffix`` is not supported. Tool calls are not
offered here. ``max_tokens`` defaults to the rest of the context window, not OpenAI's legacy 16, since the model
reasons first.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, AsyncIterator

from gptoss_cli.serve.openai.chat import new_id, usage_of
from gptoss_cli.serve.errors import BadRequest
from gptoss_cli.serve.generation.run import Generation, GenerationPlan, Outcome
from gptoss_cli.serve.harmony import render_chat
from gptoss_cli.serve.openai.params import (
    ModelInfo,
    check_unsupported,
    render_options,
    resolve_model,
    sampling_params,
    stop_strings,
)
from gptoss_cli.serve.openai.protocol import Completion, CompletionChoice, CompletionRequest
from gptoss_cli.serve.settings import ServeSettings


@dataclass(frozen=True)
class CompletionPlan:
    generation: GenerationPlan
    model: str
    stream: bool
    include_usage: bool
    echo: str


def plan_completion(req: CompletionRequest, settings: ServeSettings, info: ModelInfo) -> CompletionPlan:
    check_unsupported(req)
    model = resolve_model(req.model, settings)
    prompt = req.prompt
    if isinstance(prompt, list):
        if len(prompt) != 1:
            raise BadRequest(f"Exactly one prompt per request is supported (got {len(prompt)}).", param="prompt")
        prompt = prompt[0]
    if req.suffix:
        raise BadRequest("suffix is not supported by this server.", param="suffix")
    try:
        rendered = render_chat([{"role": "user", "content": prompt}], options=render_options(req, settings))
    except ValueError as exc:
        raise BadRequest(f"Invalid prompt: {exc}", param="prompt") from None
    prompt_ids = info.tokenizer.encode(rendered)
    params = sampling_params(req, info, prompt_tokens=len(prompt_ids), max_tokens=req.max_tokens, param="prompt")
    include_usage = bool(req.stream_options and req.stream_options.include_usage)
    plan = GenerationPlan(prompt_ids, params, (), stop_strings(req.stop))
    return CompletionPlan(plan, model, bool(req.stream), include_usage, prompt if req.echo else "")


def _finish(reason: str | None) -> str:
    """No tools are offered here, so a stray tool call ends the text like a stop."""
    return "stop" if reason in (None, "tool_calls") else reason


def completion_body(plan: CompletionPlan, outcome: Outcome, *, completion_id: str, created: int) -> Completion:
    choice = CompletionChoice(
        text=plan.echo + outcome.content,
        finish_reason=_finish(outcome.finish_reason),  # type: ignore[arg-type]
        reasoning_content=outcome.reasoning or None,
        reasoning=outcome.reasoning or None,
    )
    return Completion(
        id=completion_id,
        created=created,
        model=plan.model,
        choices=[choice],
        usage=usage_of(outcome.prompt_tokens, outcome.completion_tokens),
    )


async def completion_chunks(gen: Generation, plan: CompletionPlan) -> AsyncIterator[dict[str, Any]]:
    cid, created = new_id("cmpl"), int(time.time())

    def chunk(choice: dict[str, Any]) -> dict[str, Any]:
        return {"id": cid, "object": "text_completion", "created": created, "model": plan.model, "choices": [choice]}

    if plan.echo:
        yield chunk({"index": 0, "text": plan.echo, "logprobs": None, "finish_reason": None})
    async for d in gen.deltas():
        if d.kind == "content" and d.text:
            yield chunk({"index": 0, "text": d.text, "logprobs": None, "finish_reason": None})
        elif d.kind == "reasoning" and d.text:
            yield chunk({"index": 0, "text": "", "logprobs": None, "finish_reason": None,
                         "reasoning_content": d.text, "reasoning": d.text})
    yield chunk({"index": 0, "text": "", "logprobs": None, "finish_reason": _finish(gen.finish_reason)})
    if plan.include_usage:
        usage = usage_of(gen.prompt_tokens, gen.completion_tokens).model_dump()
        yield {"id": cid, "object": "text_completion", "created": created, "model": plan.model, "choices": [],
               "usage": usage}


__all__ = ["CompletionPlan", "completion_body", "completion_chunks", "plan_completion"]
