"""The policy at the front boundary, for every engine: input rules before the front (harmony or relay) sees the
request, output rules on its reply or stream. Without ``--policy`` a request goes straight to its front.

The rewritten body reaches the front as a validated model and, for the relay front, as the JSON it forwards
(``_Rewritten``: the request with that JSON as its body). Each rule hit is recorded once per request: its id on the
request record (``policy_hits``, for the access log and the journal) and in ``gptoss_policy_decisions_total``
labelled with the rule, its action and the API key's name (``-`` without named keys).
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from gptoss_cli.serve.generation.record import current_record
from gptoss_cli.serve.openai.fronts import front_for
from gptoss_cli.serve.openai.sse import EventStream
from gptoss_cli.serve.openai.state import ServerState

_THREAD_BYTES = 64 * 1024
log = logging.getLogger("gptoss.serve")


async def chat(server: ServerState, body: Any, request: Any) -> Any:
    return await _guarded(server, "chat", body, request)


async def completion(server: ServerState, body: Any, request: Any) -> Any:
    return await _guarded(server, "completion", body, request)


async def _guarded(server: ServerState, kind: str, body: Any, request: Any) -> Any:
    front = front_for(server)
    call = front.chat if kind == "chat" else front.completion
    policy = _policy_for(server)
    if policy is None:
        return await call(server, body, request)
    from gptoss_cli.serve.policy import OutputFilter, apply_input

    hits = Hits(server)
    if policy.has_input:
        raw = await request.json()
        if len(await request.body()) > _THREAD_BYTES:  # a big body is checked off the loop (others keep streaming)
            rewritten = await asyncio.to_thread(apply_input, policy, raw, kind, hits)
        else:
            rewritten = apply_input(policy, raw, kind, hits)
        if rewritten is not None:
            body = type(body).model_validate(rewritten)
            request = _Rewritten(request, rewritten)
    value = await call(server, body, request)
    out = OutputFilter(policy, hits, kind)
    if isinstance(value, EventStream):
        return EventStream(out.chunks(value.payloads), value.on_close)
    return out.reply(value if isinstance(value, dict) else value.model_dump())


def _policy_for(server: ServerState) -> Any:
    """The policy for this request: the API key's own (``gptoss keys add --policy FILE``) when it names one, else
    the server's ``--policy``. A key's policy file that cannot be used refuses the request (fail closed)."""
    rec = current_record()
    named = getattr(rec, "policy_name", None) if rec is not None else None
    if named and server.key_policies is not None:
        from gptoss_cli.serve.errors import APIError
        from gptoss_cli.serve.policy import PolicyError

        try:
            return server.key_policies.get(named).current
        except PolicyError as exc:
            log.error("the policy of API key %r cannot be used: %s", getattr(rec, "key_name", "?"), exc)
            raise APIError("This API key's policy cannot be applied; the request was refused. See the server log.",
                           code="policy_unavailable") from None
    return server.policy.current if server.policy is not None else None


class Hits:
    """``on_hit`` for one request: the first hit of each rule goes to the record and the metrics."""

    def __init__(self, server: ServerState) -> None:
        self.metrics = server.metrics
        self.record = current_record()
        self.seen: set[str] = set()

    def __call__(self, rule: Any) -> None:
        if rule.id in self.seen:
            return
        self.seen.add(rule.id)
        key = "-"
        if self.record is not None:
            self.record.policy_hits.append(rule.id)
            key = getattr(self.record, "key_name", None) or "-"
        try:
            self.metrics.policy_decision(rule.id, rule.action, key)
        except Exception:  # noqa: BLE001 - metrics must never break a response
            pass


class _Rewritten:
    """``request`` with ``raw`` as its JSON body (what the fronts read: ``json()`` and ``body()``)."""

    def __init__(self, request: Any, raw: dict[str, Any]) -> None:
        self._request = request
        self._raw = raw
        self._body = json.dumps(raw, ensure_ascii=False).encode("utf-8", "backslashreplace")

    async def json(self) -> dict[str, Any]:
        return self._raw

    async def body(self) -> bytes:
        return self._body

    def __getattr__(self, name: str) -> Any:
        return getattr(self._request, name)


__all__ = ["Hits", "chat", "completion"]
