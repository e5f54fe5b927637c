"""What the chat and completion endpoints check and note about a request before a front sees it, and the answer
text after — the same for every engine.

``admit(server, body, request)``: puts the requested model and Dify's ``user`` field on the request's record;
refuses a model the caller's key does not allow (404 ``model_not_found``, worded as OpenAI does for a model the key
has no access to, so a key learns nothing about models it may not use); applies the key's rpm/tpm limits (429);
and, while the journal is on, keeps the prompt text for its hash. ``captured(reply)`` hands a front's reply on and
keeps the answer text the client receives (JSON body or stream of chunks) for the journal.
"""

from __future__ import annotations

import json
from typing import Any, AsyncIterator

from gptoss_cli.serve.errors import APIError
from gptoss_cli.serve.generation.record import RequestRecord, current_record
from gptoss_cli.serve.openai.sse import EventStream


class ModelNotAllowed(APIError):
    status = 404
    type = "invalid_request_error"
    code = "model_not_found"

    def __init__(self, requested: str) -> None:
        super().__init__(f"The model {requested!r} does not exist or you do not have access to it.", param="model")


async def admit(server: Any, body: Any, request: Any) -> None:
    rec = current_record()
    if rec is None:
        return
    requested = getattr(body, "model", None) or server.settings.served_model_name
    rec.model = requested
    user = getattr(body, "user", None)
    rec.user = user[:256] if isinstance(user, str) else None
    identity = server.keys.identity(rec.key_name) if server.keys is not None else None
    if identity is not None and identity.models and requested not in identity.models:
        raise ModelNotAllowed(requested)
    if server.quota is not None:
        server.quota.admit(identity)
    if rec.journaled:
        rec.prompt_text = prompt_text(await request.json())


def allowed_models(server: Any, names: tuple[str, ...]) -> tuple[str, ...]:
    """The model names the current caller's key may use (all of ``names`` without a key model list)."""
    rec = current_record()
    identity = server.keys.identity(rec.key_name) if server.keys is not None and rec is not None else None
    if identity is None or not identity.models:
        return names
    return tuple(n for n in names if n in identity.models)


def prompt_text(raw: Any) -> str | None:
    """The prompt as journaled: chat ``messages`` as compact JSON (keys sorted), or a completion's ``prompt``."""
    if not isinstance(raw, dict):
        return None
    if "messages" in raw:
        return _compact(raw["messages"])
    prompt = raw.get("prompt")
    return prompt if isinstance(prompt, str) or prompt is None else _compact(prompt)


def captured(value: Any) -> Any:
    """``value`` (a front's reply) unchanged; its answer text goes to the record when the request is journaled."""
    rec = current_record()
    if rec is None or not rec.journaled:
        return value
    if isinstance(value, EventStream):
        return EventStream(_watched(value.payloads, rec), value.on_close)
    transcript = Transcript()
    transcript.add(value if isinstance(value, dict) else value.model_dump(exclude_none=True), stream=False)
    rec.completion_text = transcript.text()
    return value


async def _watched(payloads: AsyncIterator[dict[str, Any]], rec: RequestRecord) -> AsyncIterator[dict[str, Any]]:
    transcript = Transcript()
    try:
        async for payload in payloads:
            transcript.add(payload, stream=True)
            yield payload
    finally:
        rec.completion_text = transcript.text()
        aclose = getattr(payloads, "aclose", None)
        if aclose is not None:
            await aclose()


class Transcript:
    """The answer text of a reply or of a stream's chunks: content (or completion text), then tool calls."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.calls: dict[int, dict[str, str]] = {}

    def add(self, payload: dict[str, Any], *, stream: bool) -> None:
        for choice in payload.get("choices") or ():
            part = choice.get("delta" if stream else "message") or {}
            text = choice.get("text") if "text" in choice else part.get("content")
            if isinstance(text, str):
                self.parts.append(text)
            for n, call in enumerate(part.get("tool_calls") or ()):
                slot = self.calls.setdefault(call.get("index", n), {"name": "", "arguments": ""})
                fn = call.get("function") or {}
                slot["name"] += fn.get("name") or ""
                slot["arguments"] += fn.get("arguments") or ""

    def text(self) -> str:
        text = "".join(self.parts)
        if self.calls:
            text += ("\n" if text else "") + _compact([self.calls[i] for i in sorted(self.calls)])
        return text


def _compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


__all__ = ["ModelNotAllowed", "Transcript", "admit", "allowed_models", "captured", "prompt_text"]
