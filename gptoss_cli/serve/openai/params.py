"""Request fields shared by both endpoints → model name, render options and ``SamplingParams``.

Decisions (documented in the README):
- ``n`` must be 1; ``logprobs`` is not supported (400) — silently ignoring them would mislead clients.
- ``reasoning_effort`` / ``reasoning.effort``: low | medium | high; ``minimal`` and ``none`` map to ``low`` (gpt-oss
  always reasons); anything else (other spellings included) is a 400.
- ``max_tokens`` / ``max_completion_tokens`` default to the rest of the context window. Prompt + requested tokens
  beyond ``max_model_len`` is a 400 ``context_length_exceeded`` with the numbers.
- ``temperature`` 0 means greedy, and so does anything below 1e-5 (``engine.GREEDY_TEMPERATURE``); defaults are
  temperature 1.0 and top_p 1.0 (OpenAI's and gpt-oss' own).
- ``seed``: an int64 (pydantic checks the range: 400 outside it); the engines reduce it modulo 2**64.
- Stop ids: ``<|return|>``, ``<|call|>`` and ``<|endoftext|>`` (``engine.STOP_TOKEN_TEXTS``), as the engine's
  tokenizer spells them.
- ``presence_penalty`` / ``frequency_penalty`` are passed to the engine (OpenAI semantics on generated tokens).
- ``stop``: up to 16 strings, matched on the answer text (content), which is cut before the match.
"""

from __future__ import annotations

from dataclasses import dataclass

from gptoss_cli.serve.engines.interface import HARMONY_STOP_TEXTS, STOP_TOKEN_TEXTS, SamplingParams, Tokenizer
from gptoss_cli.serve.errors import BadRequest, ContextLengthExceeded, ModelNotFound
from gptoss_cli.serve.harmony import RenderOptions
from gptoss_cli.serve.openai.protocol import EFFORT_VALUES, MAX_STOP_STRINGS, SamplingRequest
from gptoss_cli.serve.settings import ServeSettings

_EFFORT_ALIASES = {"minimal": "low", "none": "low"}


@dataclass(frozen=True)
class ModelInfo:
    """What request planning needs from the loaded engine."""

    tokenizer: Tokenizer
    max_model_len: int
    stop_token_ids: tuple[int, ...]


def model_info(tokenizer: Tokenizer, engine_max_len: int | None, settings: ServeSettings) -> ModelInfo:
    """Effective context length (the smaller of the engine's and the configured one) and the harmony stop ids,
    looked up by text in the engine's own tokenizer (real o200k_harmony or the demo tokenizer)."""
    limits = [n for n in (engine_max_len, settings.max_model_len) if n]
    if not limits:
        raise ValueError("neither the engine nor the settings give a max model length")
    stops = tuple(i for i in (tokenizer.token_id(t) for t in STOP_TOKEN_TEXTS) if i is not None)
    if not any(tokenizer.token_id(t) is not None for t in HARMONY_STOP_TEXTS):
        raise ValueError("the tokenizer has neither <|return|> nor <|call|>: not a harmony tokenizer")
    return ModelInfo(tokenizer=tokenizer, max_model_len=min(limits), stop_token_ids=stops)


def resolve_model(requested: str | None, settings: ServeSettings) -> str:
    """The name to echo back; unknown names are a 404 listing the served name and aliases."""
    if requested is None or requested == "":
        return settings.served_model_name
    if requested not in settings.model_names:
        raise ModelNotFound(requested, settings.model_names)
    return requested


def check_unsupported(req: SamplingRequest) -> None:
    if req.n is not None and req.n != 1:
        raise BadRequest(f"Only n=1 is supported (got n={req.n}).", param="n")
    if getattr(req, "logprobs", None):
        raise BadRequest("logprobs are not supported by this server.", param="logprobs")


def reasoning_effort(req: SamplingRequest, default: str) -> str:
    raw = req.reasoning_effort
    param = "reasoning_effort"
    if raw is None and req.reasoning is not None and req.reasoning.effort is not None:
        raw, param = req.reasoning.effort, "reasoning.effort"
    if raw is None:
        return default
    if raw not in EFFORT_VALUES:
        raise BadRequest(
            f"Invalid reasoning effort {raw!r}: use one of {', '.join(EFFORT_VALUES)}.", param=param
        )
    return _EFFORT_ALIASES.get(raw, raw)


def render_options(req: SamplingRequest, settings: ServeSettings) -> RenderOptions:
    return RenderOptions(
        reasoning_effort=reasoning_effort(req, settings.reasoning_effort),
        current_date=settings.current_date,
        knowledge_cutoff=settings.knowledge_cutoff,
    )


def stop_strings(stop: str | list[str] | None) -> tuple[str, ...]:
    if stop is None:
        return ()
    items = [stop] if isinstance(stop, str) else list(stop)
    if len(items) > MAX_STOP_STRINGS:
        raise BadRequest(f"At most {MAX_STOP_STRINGS} stop strings are supported (got {len(items)}).", param="stop")
    return tuple(s for s in items if s)


def sampling_params(
    req: SamplingRequest,
    info: ModelInfo,
    *,
    prompt_tokens: int,
    max_tokens: int | None,
    param: str,
) -> SamplingParams:
    """Check the context window and build the engine's parameters. ``param`` names the prompt field in errors."""
    limit = info.max_model_len
    if prompt_tokens >= limit:
        raise ContextLengthExceeded(limit=limit, prompt_tokens=prompt_tokens, completion_tokens=None, param=param)
    if max_tokens is None:
        max_tokens = limit - prompt_tokens
    elif prompt_tokens + max_tokens > limit:
        raise ContextLengthExceeded(
            limit=limit, prompt_tokens=prompt_tokens, completion_tokens=max_tokens, param=param
        )
    return SamplingParams(
        max_tokens=max_tokens,
        temperature=1.0 if req.temperature is None else req.temperature,
        top_p=1.0 if req.top_p is None else req.top_p,
        seed=req.seed,
        presence_penalty=req.presence_penalty or 0.0,
        frequency_penalty=req.frequency_penalty or 0.0,
        stop_token_ids=info.stop_token_ids,
    )


__all__ = [
    "ModelInfo",
    "check_unsupported",
    "model_info",
    "reasoning_effort",
    "render_options",
    "resolve_model",
    "sampling_params",
    "stop_strings",
]
