"""A chat app inside the fake Dify: calls the registered model the way that version's runtime does (§5, §9).

- Dify 0.15.3 (built-in provider): streamed ``reasoning_content`` is wrapped into the answer as
  ``<details style=… open> <summary> Thinking... </summary>`` + reasoning + ``</details>`` + answer, stored, and sent
  back **as is** as the assistant message of later turns. Blocking replies: ``message.content`` only, no reasoning.
  The model name sent is always Dify's model name.
- Dify 1.x (openai_api_compatible plugin, dify-plugin SDK): ``reasoning`` or ``reasoning_content`` becomes
  ``<think>\\n…\\n</think>`` before the answer, streaming and blocking; with ``agent_thought_support`` other than
  ``supported``/``only_thinking_supported`` a plugin from 0.0.33 removes that block (older plugins do not filter).
  ``<think>`` blocks are removed from assistant history before the call. A ``json_schema`` app parameter (a JSON
  string) is sent as ``response_format: {"type": "json_schema", "json_schema": <parsed>}``, only when the
  credentials declare ``structured_output_support: supported``.
- A non-200 answer is ``InvokeError("[models] Error: API request failed with status code N: <body>")``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin

import httpx
from packaging.version import Version

from tests.dify_fake import FakeDify

DETAILS_OPEN = ('<details style="color:gray;background-color: #f8f8f8;padding: 8px;border-radius: 4px;" open> '
                "<summary> Thinking... </summary>")
_PLUGIN_THINK = re.compile(r"<think>.*?</think>\s*", re.DOTALL)  # the plugin's own history filter


class InvokeError(Exception):
    pass


@dataclass
class FakeChatApp:
    """One conversation in a chat app of ``fake`` using its registered ``model``."""

    fake: FakeDify
    model: str = "gpt-oss-20b"
    stream: bool = True
    params: dict[str, Any] = field(default_factory=dict)
    history: list[tuple[str, str]] = field(default_factory=list)  # (query, answer as Dify stored it)
    sent: list[dict[str, Any]] = field(default_factory=list)  # request bodies sent to the model server
    urls: list[str] = field(default_factory=list)

    @property
    def builtin(self) -> bool:
        return not self.fake.plugins

    def credentials(self) -> dict[str, str]:
        rec = self.fake.records[self.model]
        if not self.fake.creds_api:
            return rec["values"]
        return self.fake.creds[rec["current"]].values

    def send(self, query: str) -> str:
        """Ask ``query``; returns (and stores) the answer as Dify shows it."""
        creds = self.credentials()
        url = urljoin(creds["endpoint_url"].rstrip("/") + "/", "chat/completions")
        headers = {"Content-Type": "application/json"}
        if creds.get("api_key"):
            headers["Authorization"] = f"Bearer {creds['api_key']}"
        body = {"model": self.model if self.builtin else (creds.get("endpoint_model_name") or self.model),
                "stream": self.stream, **self._parameters(creds), "messages": self._messages(query), "user": "u-1"}
        if self.stream and not self.builtin:
            body["stream_options"] = {"include_usage": True}
        self.sent.append(body)
        self.urls.append(url)
        with httpx.Client(trust_env=False, timeout=httpx.Timeout(300, connect=10)) as http:
            resp = http.post(url, json=body, headers=headers)
        if resp.status_code != 200:
            raise InvokeError(f"[models] Error: API request failed with status code {resp.status_code}: {resp.text}")
        answer = self._from_stream(resp.text) if self.stream else self._from_message(resp.json())
        answer = answer if self._shows_thinking(creds) else _PLUGIN_THINK.sub("", answer)
        self.history.append((query, answer))
        return answer

    def _messages(self, query: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for q, a in self.history:
            out.append({"role": "user", "content": q})
            out.append({"role": "assistant", "content": a if self.builtin else _PLUGIN_THINK.sub("", a)})
        return out + [{"role": "user", "content": query}]

    def _parameters(self, creds: dict[str, str]) -> dict[str, Any]:
        params = dict(self.params)
        fmt = params.pop("response_format", None)
        schema = params.pop("json_schema", None)
        if fmt is not None:
            if self.builtin or creds.get("structured_output_support") != "supported":
                raise ValueError("this registration offers no response_format parameter in Dify")
            params["response_format"] = ({"type": "json_schema", "json_schema": json.loads(schema)}
                                         if fmt == "json_schema" else {"type": fmt})
        return params

    def _shows_thinking(self, creds: dict[str, str]) -> bool:
        if self.builtin or Version(self.fake.plugin_version or "0") < Version("0.0.33"):
            return True
        return creds.get("agent_thought_support") in ("supported", "only_thinking_supported")

    def _from_message(self, data: dict[str, Any]) -> str:
        message = data["choices"][0]["message"]
        content = message.get("content") or ""
        if self.builtin:
            return content
        reasoning = message.get("reasoning") or message.get("reasoning_content")
        return f"<think>\n{reasoning}\n</think>{content}" if reasoning else content

    def _from_stream(self, text: str) -> str:
        out, thinking = "", False
        for chunk in text.split("\n\n"):
            chunk = chunk.strip()
            if not chunk or chunk.startswith(":"):
                continue
            chunk = chunk[len("data:"):].strip() if chunk.startswith("data:") else chunk
            if chunk == "[DONE]":
                continue
            doc = json.loads(chunk)
            if not doc.get("choices"):
                continue
            delta = doc["choices"][0].get("delta") or {}
            piece, thinking = (self._wrap_015 if self.builtin else self._wrap_plugin)(delta, thinking)
            out += piece
        return out  # 0.15 never closes a block the stream ended inside; the plugin closes on an empty delta

    @staticmethod
    def _wrap_015(delta: dict[str, Any], thinking: bool) -> tuple[str, bool]:
        content, reasoning = delta.get("content") or "", delta.get("reasoning_content")
        if reasoning:
            return (reasoning if thinking else DETAILS_OPEN + reasoning), True
        return ("</details>" + content if thinking else content), False

    @staticmethod
    def _wrap_plugin(delta: dict[str, Any], thinking: bool) -> tuple[str, bool]:
        content = delta.get("content") or ""
        reasoning = delta.get("reasoning") or delta.get("reasoning_content") or ""
        out = ""
        if reasoning:
            out, thinking = (reasoning if thinking else "<think>\n" + reasoning), True
        if thinking and (content or not reasoning):
            return out + "\n</think>" + content, False
        return out + ("" if thinking else content), thinking
