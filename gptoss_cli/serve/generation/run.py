"""One run of the model: prompt ids → generated token ids → harmony deltas (with stop strings applied).

``Generation`` is what both endpoints and both response modes share. It takes a ``generate`` function (the
pipeline's ``Pipeline.generate``: cache, admission and observation around the engine), the tokenizer and a
``GenerationPlan``.
``start()`` waits for the first token, so failures before any output (engine error, overload, not ready) still
become a proper HTTP status; ``deltas()`` then yields parsed pieces; ``collect()`` gathers them into an ``Outcome``.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field, replace
from typing import AsyncIterator, Callable, Iterator

from gptoss_cli.serve.engines.interface import SamplingParams, Tokenizer
from gptoss_cli.serve.errors import APIError, EngineFailure, ResponseFormatFailed, api_error_for
from gptoss_cli.serve.harmony import Delta, HarmonyStreamParser, ToolCall
from gptoss_cli.serve.generation.response_format import JsonCheck

log = logging.getLogger("gptoss.serve")

GenerateFn = Callable[[list[int], SamplingParams], AsyncIterator[int]]


@dataclass(frozen=True)
class GenerationPlan:
    """What to generate. ``prompt_ids`` ends with ``prefill_ids`` (assistant header tokens the server forces, e.g.
    for ``tool_choice``); the parser reads the prefill as if the model had produced it."""

    prompt_ids: list[int]
    params: SamplingParams
    prefill_ids: tuple[int, ...] = ()
    stop_strings: tuple[str, ...] = ()


@dataclass
class Outcome:
    content: str
    reasoning: str
    tool_calls: list[ToolCall]
    finish_reason: str  # stop | length | tool_calls
    prompt_tokens: int
    completion_tokens: int


class StopMatcher:
    """Cuts content at the first stop string; holds back a tail that could still become one."""

    def __init__(self, stops: tuple[str, ...]) -> None:
        self.stops = tuple(s for s in stops if s)
        self._held = ""

    def feed(self, text: str) -> tuple[str, bool]:
        """Return (text safe to emit now, whether a stop string was hit)."""
        buf = self._held + text
        hits = [i for i in (buf.find(s) for s in self.stops) if i != -1]
        if hits:
            self._held = ""
            return buf[: min(hits)], True
        hold = 0
        for stop in self.stops:
            for k in range(min(len(stop) - 1, len(buf)), hold, -1):
                if buf.endswith(stop[:k]):
                    hold = k
                    break
        self._held = buf[len(buf) - hold :] if hold else ""
        return buf[: len(buf) - hold], False

    def flush(self) -> str:
        out, self._held = self._held, ""
        return out


@dataclass
class _ToolAcc:
    id: str
    name: str
    args: list[str] = field(default_factory=list)


class Generation:
    """A single generation. Use ``await start()``, then iterate ``deltas()`` (or ``await collect()``)."""

    def __init__(
        self,
        generate: GenerateFn,
        tokenizer: Tokenizer,
        plan: GenerationPlan,
        *,
        id_factory: Callable[[], str] | None = None,
    ) -> None:
        self._generate = generate
        self._tokenizer = tokenizer
        self.plan = plan
        self._id_factory = id_factory
        self._tokens: AsyncIterator[int] | None = None
        self._first: int | None = None
        self._matcher = StopMatcher(plan.stop_strings) if plan.stop_strings else None
        self._stopped_by_string = False
        self._saw_tool_call = False
        self.completion_tokens = 0
        self.finish_reason: str | None = None

    @property
    def prompt_tokens(self) -> int:
        return len(self.plan.prompt_ids)

    async def start(self) -> None:
        """Submit the prompt and wait for the first token (errors here are still plain HTTP errors)."""
        self._tokens = self._generate(list(self.plan.prompt_ids), self.plan.params)
        try:
            self._first = await self._next()
        except BaseException:
            await self.aclose()
            raise

    async def _next(self) -> int | None:
        assert self._tokens is not None
        try:
            return await self._tokens.__anext__()
        except StopAsyncIteration:
            return None
        except (APIError, asyncio.CancelledError):
            raise
        except Exception as exc:  # noqa: BLE001 - any engine failure becomes one typed API error
            mapped = api_error_for(exc)
            if mapped is not None:
                raise mapped from None
            log.exception("generation failed")
            raise EngineFailure(f"The model failed while generating ({type(exc).__name__}).") from None

    async def aclose(self) -> None:
        tokens, self._tokens = self._tokens, None
        if tokens is not None and hasattr(tokens, "aclose"):
            try:
                await tokens.aclose()  # type: ignore[attr-defined]
            except Exception:  # noqa: BLE001 - closing must not mask the real outcome
                log.exception("closing the generation failed")

    async def deltas(self) -> AsyncIterator[Delta]:
        """Parsed output pieces, in order. Ends the generation early when a stop string is hit."""
        parser = HarmonyStreamParser(self._tokenizer, id_factory=self._id_factory)
        try:
            for tok in self.plan.prefill_ids:
                for d in self._filter(parser.feed(tok)):
                    yield d
            tok = self._first
            while tok is not None and not self._stopped_by_string:
                self.completion_tokens += 1
                for d in self._filter(parser.feed(tok)):
                    yield d
                if self._stopped_by_string:
                    break  # we end it early: closing the iterator below cancels the generation
                if parser.finish_reason is not None:
                    await self._next()  # the engine ends by itself after a stop token (anything more is dropped)
                    break
                tok = await self._next()
            if not self._stopped_by_string:
                for d in self._filter(parser.finish()):
                    yield d
                for d in self._flush():
                    yield d
        finally:
            await self.aclose()
        self.finish_reason = self._finish_reason(parser.finish_reason)

    def _finish_reason(self, parsed: str | None) -> str:
        if parsed is None and self.completion_tokens >= self.plan.params.max_tokens and not self._stopped_by_string:
            return "length"
        reason = parsed or "stop"
        return "tool_calls" if self._saw_tool_call and reason == "stop" else reason

    def _filter(self, deltas: list[Delta]) -> Iterator[Delta]:
        for d in deltas:
            if self._stopped_by_string:
                return
            if d.kind == "tool_call_start":
                self._saw_tool_call = True
            if self._matcher is None:
                yield d
            elif d.kind == "content":
                text, hit = self._matcher.feed(d.text)
                if text:
                    yield Delta("content", text)
                if hit:
                    self._stopped_by_string = True
            else:
                yield from self._flush()
                yield d

    def _flush(self) -> Iterator[Delta]:
        if self._matcher is not None:
            held = self._matcher.flush()
            if held:
                yield Delta("content", held)

    async def collect(self) -> Outcome:
        """Run to the end and gather the pieces."""
        content: list[str] = []
        reasoning: list[str] = []
        calls: dict[int, _ToolAcc] = {}
        async for d in self.deltas():
            if d.kind == "content":
                content.append(d.text)
            elif d.kind == "reasoning":
                reasoning.append(d.text)
            elif d.kind == "tool_call_start":
                calls[d.index] = _ToolAcc(id=d.call_id or "", name=d.name or "")
            elif d.kind == "tool_call_args" and d.index in calls:
                calls[d.index].args.append(d.text)
        tool_calls = [ToolCall(id=c.id, name=c.name, arguments="".join(c.args)) for _, c in sorted(calls.items())]
        finish = self.finish_reason or "stop"
        return Outcome(
            content="".join(content),
            reasoning="".join(reasoning),
            tool_calls=tool_calls,
            finish_reason=finish,
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
        )


async def run_checked(
    generate: GenerateFn,
    tokenizer: Tokenizer,
    plan: GenerationPlan,
    check: JsonCheck | None,
    retries: int,
) -> Outcome:
    """Generate to the end; with a JSON ``response_format``, validate the answer and retry (see ``jsonformat``).

    Retries sample (temperature at least 0.7, the seed moved on) so that a greedy request does not repeat the same
    answer. Usage counts the tokens of every attempt.
    """
    attempt_plan = plan
    spent = 0
    problem: str | None = None
    for attempt in range(retries + 1):
        gen = Generation(generate, tokenizer, attempt_plan)
        await gen.start()
        outcome = await gen.collect()
        spent += outcome.completion_tokens
        if check is None or outcome.finish_reason != "stop" or outcome.tool_calls:
            break
        cleaned, problem = check.problem(outcome.content)
        if problem is None:
            outcome.content = cleaned
            break
        log.info("answer %d of %d did not satisfy response_format: %s", attempt + 1, retries + 1, problem)
        params = attempt_plan.params
        attempt_plan = replace(
            attempt_plan,
            params=replace(
                params,
                temperature=max(params.temperature, 0.7),
                seed=None if params.seed is None else params.seed + attempt + 1,
            ),
        )
    else:
        raise ResponseFormatFailed(
            f"The model's answer did not satisfy response_format after {retries + 1} attempts: {problem}."
        )
    outcome.completion_tokens = spent
    return outcome


__all__ = ["GenerateFn", "Generation", "GenerationPlan", "Outcome", "StopMatcher", "run_checked"]
