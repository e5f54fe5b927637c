"""Pure normalisation of OpenAI-compatible replies from other servers into the shape gptoss promises.

Backends differ in small ways that break clients (reference/harmony-and-gptoss.md §3, §7; dify-api.md §5):

- vLLM sends reasoning only as ``reasoning`` (``reasoning_content`` was removed), llama.cpp only as
  ``reasoning_content``: every reasoning delta / message here carries **both**.
- Tool-call ids look like ``chatcmpl-tool-<uuid>`` (vLLM), ``call_…`` (Ollama, OpenAI) or are missing: ids become
  ``call_…`` (a stable digest of the upstream id, so the same upstream id always maps to the same id), and the first
  delta of each call carries ``index``, ``id``, ``type`` and ``function.name``; later deltas carry only
  ``index`` + ``function.arguments`` (Dify merges fragments by id / appends id-less ones to the last call).
- ``usage`` may be missing (non-stream), attached to a choice chunk, or sent only on request: non-stream replies
  always carry ``usage``; streams get one ``choices: []`` usage chunk at the end when the client asked for it.
- Every stream chunk has ``choices``; ``model`` is the name the client asked for.

Nothing here does I/O; ``upstream.py`` feeds it parsed JSON.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from typing import Any

from gptoss_cli.serve.harmony.reasoning_wrappers import strip_reasoning


def gptoss_call_id(upstream_id: Any) -> str:
    """``call_…`` form of an upstream tool-call id (kept when it already has that form; stable digest otherwise)."""
    if isinstance(upstream_id, str) and upstream_id.startswith("call_") and len(upstream_id) > 5:
        return upstream_id
    if isinstance(upstream_id, str) and upstream_id:
        return "call_" + hashlib.sha256(upstream_id.encode("utf-8")).hexdigest()[:24]
    return "call_" + secrets.token_hex(12)


def both_reasoning(obj: dict[str, Any]) -> None:
    """Make ``reasoning`` and ``reasoning_content`` agree (in place) when either is present."""
    value = obj.get("reasoning")
    if not isinstance(value, str) or value == "":
        alt = obj.get("reasoning_content")
        value = alt if isinstance(alt, str) and alt != "" else value
    if isinstance(value, str) and value != "":
        obj["reasoning"] = value
        obj["reasoning_content"] = value
    elif "reasoning" in obj or "reasoning_content" in obj:
        obj["reasoning"] = obj["reasoning_content"] = None


def estimate_tokens(text: str) -> int:
    """A rough token count (4 characters a token) for backends that report no usage; never below 1 for text."""
    return (len(text) + 3) // 4


def request_text(body: dict[str, Any]) -> str:
    """All the text of a request (messages or prompt), for a usage estimate."""
    parts: list[str] = []
    prompt = body.get("prompt")
    if isinstance(prompt, str):
        parts.append(prompt)
    elif isinstance(prompt, list):
        parts.extend(p for p in prompt if isinstance(p, str))
    for m in body.get("messages") or []:
        if not isinstance(m, dict):
            continue
        content = m.get("content")
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            parts.extend(p.get("text", "") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return "\n".join(parts)


def usage_dict(usage: Any, prompt_text: str, completion_text: str) -> dict[str, Any]:
    """A complete ``usage`` object: the upstream's when it has the counts, else an estimate from the text."""
    if isinstance(usage, dict) and isinstance(usage.get("prompt_tokens"), int) and isinstance(
        usage.get("completion_tokens"), int
    ):
        out = dict(usage)
        out.setdefault("total_tokens", usage["prompt_tokens"] + usage["completion_tokens"])
        return out
    p, c = estimate_tokens(prompt_text), estimate_tokens(completion_text)
    return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}


def upstream_body(body: dict[str, Any], *, model: str, stream: bool,
                  default_effort: str | None = None) -> dict[str, Any]:
    """The request to send upstream: our model name, usage always requested on streams, tidy assistant history.

    Unknown fields pass through untouched. ``stream_options`` is dropped on non-streaming requests (vLLM answers 400
    to it); ``reasoning: {effort}`` becomes ``reasoning_effort``; assistant history gets ``reasoning`` copied from
    ``reasoning_content`` (vLLM reads only ``reasoning``) and loses Dify's ``<think>`` blocks.
    """
    out = dict(body)
    out["model"] = model
    out["stream"] = stream
    if stream:
        options = out.get("stream_options") if isinstance(out.get("stream_options"), dict) else {}
        out["stream_options"] = {**options, "include_usage": True}
    else:
        out.pop("stream_options", None)
    reasoning = out.get("reasoning")
    if "reasoning_effort" not in out:
        if isinstance(reasoning, dict) and isinstance(reasoning.get("effort"), str):
            out["reasoning_effort"] = reasoning["effort"]
        elif default_effort:
            out["reasoning_effort"] = default_effort
    if isinstance(out.get("messages"), list):
        out["messages"] = [_history_message(m) for m in out["messages"]]
    return out


def _history_message(m: Any) -> Any:
    if not isinstance(m, dict) or m.get("role") != "assistant":
        return m
    m = dict(m)
    if isinstance(m.get("content"), str):
        m["content"] = strip_reasoning(m["content"])  # Dify's <think> / <details> Thinking wrappers
    if not m.get("reasoning") and isinstance(m.get("reasoning_content"), str):
        m["reasoning"] = m["reasoning_content"]
    return m


# ------------------------------------------------------------------------------------------------ non-streaming


def normalise_reply(data: Any, *, kind: str, model: str, request: dict[str, Any]) -> dict[str, Any] | None:
    """Normalise one non-streaming reply; ``None`` when it is not a completion at all (no ``choices`` list)."""
    if not isinstance(data, dict) or not isinstance(data.get("choices"), list):
        return None
    out = dict(data)
    out["object"] = "chat.completion" if kind == "chat" else "text_completion"
    out["model"] = model
    out["id"] = out.get("id") or f"{'chatcmpl' if kind == 'chat' else 'cmpl'}-{secrets.token_hex(12)}"
    if not isinstance(out.get("created"), int):
        out["created"] = int(time.time())
    texts: list[str] = []
    choices = []
    for i, choice in enumerate(out["choices"]):
        choice = dict(choice) if isinstance(choice, dict) else {}
        choice.setdefault("index", i)
        choice.setdefault("finish_reason", "stop")
        if kind == "chat":
            choice["message"] = _message(choice.get("message"), texts)
            if choice["message"].get("tool_calls") and choice["finish_reason"] == "stop":
                choice["finish_reason"] = "tool_calls"
        elif isinstance(choice.get("text"), str):
            texts.append(choice["text"])
        choices.append(choice)
    out["choices"] = choices
    out["usage"] = usage_dict(out.get("usage"), request_text(request), "".join(texts))
    return out


def _message(message: Any, texts: list[str]) -> dict[str, Any]:
    msg = dict(message) if isinstance(message, dict) else {}
    msg["role"] = msg.get("role") or "assistant"
    msg.setdefault("content", None)
    both_reasoning(msg)
    for key in ("content", "reasoning"):
        if isinstance(msg.get(key), str):
            texts.append(msg[key])
    calls = msg.get("tool_calls")
    if isinstance(calls, list):
        fixed = []
        for call in calls:
            if not isinstance(call, dict):
                continue
            fn = dict(call.get("function") or {})
            args = fn.get("arguments")
            fn["arguments"] = args if isinstance(args, str) else json.dumps(args if args is not None else {})
            texts.append(fn["arguments"])
            fixed.append({**call, "id": gptoss_call_id(call.get("id")), "type": "function", "function": fn})
        msg["tool_calls"] = fixed or None
    return msg


# ---------------------------------------------------------------------------------------------------- streaming


class StreamNormaliser:
    """Turns upstream stream chunks into gptoss chunks, one call per upstream chunk (no buffering).

    ``feed(chunk)`` returns the chunks to send now (usually one, none for usage-only chunks); ``finish()`` returns
    the closing usage chunk when the client asked for it. ``usage`` holds the counts seen (or estimated).
    """

    def __init__(self, *, kind: str, model: str, request: dict[str, Any], include_usage: bool) -> None:
        self.kind = kind
        self.model = model
        self.include_usage = include_usage
        self._request = request
        self._id: str | None = None
        self._created = int(time.time())
        self._upstream_usage: Any = None
        self._text: list[str] = []
        self._role_sent: set[int] = set()
        self._calls: dict[tuple[int, int], str] = {}  # (choice, call index) -> our id
        self._pending: dict[tuple[int, int], dict[str, Any]] = {}  # calls whose name has not arrived yet
        self.finish_reason: str | None = None

    @property
    def object(self) -> str:
        return "chat.completion.chunk" if self.kind == "chat" else "text_completion"

    @property
    def usage(self) -> dict[str, Any]:
        return usage_dict(self._upstream_usage, request_text(self._request), "".join(self._text))

    def feed(self, chunk: Any) -> list[dict[str, Any]]:
        if not isinstance(chunk, dict):
            return []
        if "error" in chunk and not chunk.get("choices"):
            return [error_envelope(chunk)]
        if chunk.get("usage"):
            self._upstream_usage = chunk["usage"]
        if self._id is None:
            self._id = chunk.get("id") or f"chatcmpl-{secrets.token_hex(12)}"
        choices = [self._choice(c, i) for i, c in enumerate(chunk.get("choices") or []) if isinstance(c, dict)]
        choices = [c for c in choices if c is not None]
        if not choices:
            return []
        return [self._envelope(choices)]

    def finish(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        if self._pending:  # a call whose name never came: send what there is rather than lose it
            for (ci, ti), call in sorted(self._pending.items()):
                self._calls[(ci, ti)] = call["id"]
                out.append(self._envelope([{"index": ci, "delta": {"tool_calls": [call]}, "logprobs": None,
                                            "finish_reason": None}]))
            self._pending.clear()
        if self.include_usage:
            out.append({**self._envelope([]), "usage": self.usage})
        return out

    def _envelope(self, choices: list[dict[str, Any]]) -> dict[str, Any]:
        return {"id": self._id or f"chatcmpl-{secrets.token_hex(12)}", "object": self.object,
                "created": self._created, "model": self.model, "choices": choices}

    def _choice(self, choice: dict[str, Any], position: int) -> dict[str, Any] | None:
        ci = choice.get("index") if isinstance(choice.get("index"), int) else position
        finish = choice.get("finish_reason")
        if self.kind != "chat":
            if isinstance(choice.get("text"), str):
                self._text.append(choice["text"])
            self.finish_reason = finish or self.finish_reason
            return {**choice, "index": ci}
        delta = dict(choice.get("delta") or {})
        if "reasoning" in delta or "reasoning_content" in delta:
            both_reasoning(delta)
        for key in ("content", "reasoning"):
            if isinstance(delta.get(key), str):
                self._text.append(delta[key])
        if "tool_calls" in delta:
            calls = self._tool_deltas(ci, delta.get("tool_calls"))
            if calls:
                delta["tool_calls"] = calls
            else:
                delta.pop("tool_calls")
        if ci not in self._role_sent:
            self._role_sent.add(ci)
            delta["role"] = delta.get("role") or "assistant"
        if finish == "stop" and any(k[0] == ci for k in self._calls):
            finish = "tool_calls"
        if finish:
            self.finish_reason = finish
        if not delta and finish is None and choice.get("logprobs") is None:
            return None
        return {"index": ci, "delta": delta, "logprobs": choice.get("logprobs"), "finish_reason": finish}

    def _tool_deltas(self, ci: int, calls: Any) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for position, call in enumerate(calls if isinstance(calls, list) else []):
            if not isinstance(call, dict):
                continue
            ti = call.get("index") if isinstance(call.get("index"), int) else position
            fn = call.get("function") if isinstance(call.get("function"), dict) else {}
            args = fn.get("arguments")
            args = args if isinstance(args, str) else ("" if args is None else json.dumps(args))
            self._text.append(args)
            key = (ci, ti)
            if key in self._calls:
                if args:
                    out.append({"index": ti, "function": {"arguments": args}})
                continue
            pending = self._pending.setdefault(key, {"index": ti, "id": None, "type": "function",
                                                     "function": {"name": "", "arguments": ""}})
            if pending["id"] is None and call.get("id"):
                pending["id"] = gptoss_call_id(call["id"])
            if fn.get("name"):
                pending["function"]["name"] = fn["name"]
            pending["function"]["arguments"] += args
            if pending["function"]["name"]:
                pending["id"] = pending["id"] or gptoss_call_id(None)
                self._calls[key] = pending["id"]
                out.append(self._pending.pop(key))
        for call in self._pending.values():
            call["id"] = call["id"] or gptoss_call_id(None)
        return out


def error_envelope(data: Any, default: str = "The upstream model server reported an error.") -> dict[str, Any]:
    """An OpenAI error envelope from whatever error object an upstream sent."""
    err = data.get("error") if isinstance(data, dict) else None
    if isinstance(err, str):
        err = {"message": err}
    if not isinstance(err, dict):
        err = data if isinstance(data, dict) else {}
    message = err.get("message") or err.get("detail") or default
    code = err.get("code")
    return {"error": {"message": " ".join(str(message).split())[:1000],
                      "type": err.get("type") if isinstance(err.get("type"), str) else "server_error",
                      "param": err.get("param") if isinstance(err.get("param"), str) else None,
                      "code": code if isinstance(code, str) else "upstream_error"}}


__all__ = [
    "StreamNormaliser",
    "both_reasoning",
    "error_envelope",
    "estimate_tokens",
    "gptoss_call_id",
    "normalise_reply",
    "request_text",
    "upstream_body",
    "usage_dict",
]
