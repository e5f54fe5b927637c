"""``--journal FILE``: one sealed, chained JSON line (``gptoss_cli/journal/``) per ``/v1/`` request and per policy
decision, plus ``start`` and ``stop`` records for the server itself.

A request line: ``ts kind=request request_id method route status key_name policy user model client prompt_tokens
completion_tokens latency_ms cache rule_ids prompt_sha256 completion_sha256`` (+ ``error``; + ``prompt`` and
``completion`` with ``--journal-prompts``). The key is named, never shown. ``prompt`` is the request's ``messages``
(chat; compact JSON, keys sorted) or ``prompt`` (completions: the string, else its compact JSON); ``completion`` is
the answer's text as sent (``content`` or ``text``, tool calls as their compact JSON after it). A policy decision
line (``kind=policy``: ``request_id key_name policy rule_id``) comes just before the request's own line.

A reply sent in one piece is journaled just before it leaves (``journal_middleware.py``), a streamed one when it
ends. When a record cannot be written (disk full, I/O error), ``--journal-on-error refuse`` (the default) turns that
one-piece reply into a 503 ``journal_unavailable`` and answers every later ``/v1/`` request so until a write works
again — the journal then first records what was lost — rather than serve unlogged; ``continue`` serves on and logs
the failure.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

from gptoss_cli.journal.chain import sha256_text
from gptoss_cli.journal.writer import JournalWriter, utc_now
from gptoss_cli.serve.errors import APIError
from gptoss_cli.serve.generation.record import RequestRecord

log = logging.getLogger("gptoss.serve")
ON_ERROR = ("refuse", "continue")


class JournalUnavailable(APIError):
    status = 503
    type = "server_error"
    code = "journal_unavailable"

    def __init__(self) -> None:
        super().__init__("The request journal cannot be written (disk full?); requests are refused until it can.",
                         headers={"Retry-After": "5"})


class Journal:
    def __init__(self, writer: JournalWriter, *, on_error: str = "refuse", full_text: bool = False) -> None:
        if on_error not in ON_ERROR:
            raise ValueError(f"on_error must be one of {', '.join(ON_ERROR)}")
        self.writer = writer
        self.on_error = on_error
        self.full_text = full_text
        self._warned = False
        self._early: set[int] = set()  # records written before their reply was sent (JournalMiddleware)

    @classmethod
    def open(cls, path: Path | str, *, max_bytes: int | None = None, on_error: str = "refuse",
             full_text: bool = False) -> "Journal":
        return cls(JournalWriter(path, max_bytes=max_bytes).open(), on_error=on_error, full_text=full_text)

    def admit(self) -> bool:
        """Whether a request may be served now (the journal works, or works again, or ``continue``)."""
        if self.writer.healthy or self.writer.probe():
            self._warned = False
            return True
        if self.on_error == "continue":
            if not self._warned:
                log.warning("serving without the journal %s (--journal-on-error continue)", self.writer.path)
                self._warned = True
            return True
        self.writer.note_refused()
        return False

    def event(self, kind: str, **fields: Any) -> bool:
        return self.writer.append({"ts": utc_now(), "kind": kind, **fields})

    def started(self, **info: Any) -> None:
        self.event("start", pid=os.getpid(), **info)

    def stopped(self) -> None:
        self.event("stop", pid=os.getpid())
        self.writer.close()

    def record(self, rec: RequestRecord) -> None:
        """The end of a request: its policy decisions, then its own line (only ``/v1/`` requests are journaled;
        a reply journaled before it was sent is not journaled again)."""
        if id(rec) in self._early:
            self._early.discard(id(rec))
        elif rec.journaled:
            self._write(rec)

    def record_now(self, rec: RequestRecord) -> bool:
        """Journal ``rec`` before its reply goes out; False when that could not be written."""
        self._early.add(id(rec))
        return self._write(rec)

    def _write(self, rec: RequestRecord) -> bool:
        rules = [str(r) for r in (getattr(rec, "policy_hits", None) or ())]
        ok = True
        for rule in rules:
            decision = {"ts": utc_now(), "kind": "policy", "request_id": rec.id, "key_name": rec.key_name,
                        "policy": rec.policy_name, "rule_id": rule}
            ok = self.writer.append(decision, record_id=rec.id) and ok
        return self.writer.append(self.request_fields(rec, rules), record_id=rec.id) and ok

    def request_fields(self, rec: RequestRecord, rules: list[str]) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "ts": utc_now(), "kind": "request", "request_id": rec.id, "method": rec.method,
            "route": rec.path[:200],
            "status": rec.status, "key_name": rec.key_name, "policy": rec.policy_name, "user": rec.user,
            "model": rec.model, "client": rec.client, "prompt_tokens": rec.prompt_tokens,
            "completion_tokens": rec.completion_tokens, "latency_ms": round(_latency(rec) * 1000, 1),
            "cache": None if rec.cache_hit is None else ("hit" if rec.cache_hit else "miss"), "rule_ids": rules,
            "prompt_sha256": sha256_text(rec.prompt_text), "completion_sha256": sha256_text(rec.completion_text),
        }
        if rec.error:
            fields["error"] = rec.error
        if self.full_text:
            fields["prompt"], fields["completion"] = rec.prompt_text, rec.completion_text
        return fields


def _latency(rec: RequestRecord) -> float:
    return rec.latency if rec.latency is not None else time.perf_counter() - rec.start


def open_journal(settings: Any) -> Journal | None:
    """The journal ``settings`` ask for (``journal``, ``journal_max_bytes``, ``journal_on_error``,
    ``journal_prompts``), or None."""
    path = getattr(settings, "journal", None)
    if not path:
        return None
    from gptoss_cli.serve.options import parse_size

    size = getattr(settings, "journal_max_bytes", None)
    return Journal.open(path, max_bytes=parse_size(size) if size else None,
                        on_error=getattr(settings, "journal_on_error", "refuse"),
                        full_text=bool(getattr(settings, "journal_prompts", False)))


__all__ = ["ON_ERROR", "Journal", "JournalUnavailable", "open_journal"]
