"""The per-request record: what the pipeline learns about a request (tokens, time to first token, cache outcome)
and the client's disconnect, shared through a context variable with the access log (``openai/accesslog.py``), which
creates it for every HTTP request and writes it out when the response is over."""

from __future__ import annotations

import asyncio
import contextvars
import time
from dataclasses import dataclass, field
from typing import Sequence


@dataclass
class RequestRecord:
    id: str
    method: str
    path: str
    client: str | None = None
    start: float = field(default_factory=time.perf_counter)
    status: int = 0
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    ttft: float | None = None
    cache_hit: bool | None = None
    error: str | None = None
    prompt_ids: Sequence[int] | None = None
    completion_ids: list[int] | None = None
    latency: float | None = None
    # Who asked and for what (the guard and the endpoints' admission, openai/guard.py + openai/admission.py), and
    # what the journal hashes (openai/journaling.py): the key's name (never the key), its policy, Dify's ``user``.
    key_name: str | None = None
    policy_name: str | None = None
    user: str | None = None
    model: str | None = None
    journaled: bool = False  # a /v1/ request while --journal is on: prompt and completion text are collected
    prompt_text: str | None = None
    completion_text: str | None = None
    disconnected: asyncio.Future | None = None  # completes when the client goes away
    policy_hits: list[str] = field(default_factory=list)  # ids of the policy rules this request hit, in order
    kv_waits: int = 0  # times the engine held it back for KV memory
    preemptions: int = 0  # times the engine dropped its KV to make room (it resumed, recomputed)

    def first_token(self) -> float:
        if self.ttft is None:
            self.ttft = time.perf_counter() - self.start
        return self.ttft


def note_engine_event(name: str) -> None:
    """Count an engine's ``"kv_wait"`` / ``"preempted"`` on the record of the request being handled (if any)."""
    rec = _current.get()
    if rec is None:
        return
    if name == "kv_wait":
        rec.kv_waits += 1
    elif name == "preempted":
        rec.preemptions += 1


_current: contextvars.ContextVar[RequestRecord | None] = contextvars.ContextVar("gptoss_request", default=None)


def current_record() -> RequestRecord | None:
    """The record of the request being handled in this task (None outside a request)."""
    return _current.get()


__all__ = ["RequestRecord", "current_record", "note_engine_event"]
