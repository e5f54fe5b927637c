"""Input rules on a request's JSON (``messages`` of a chat, the ``prompt`` of a completion), before any engine.

- ``block``: the request is refused with a 400 ``policy_violation`` naming the rule and where (never the text);
- ``redact``: matches are replaced before the model sees them;
- with glossary terms (and ``instruct``), the glossary joins the developer instructions of a chat: appended to a
  leading system/developer message, or as a new first system message.

``apply_input`` returns the rewritten JSON, or None when nothing changed (the request goes on as it came).
"""

from __future__ import annotations

import copy
from typing import Any, Callable

from gptoss_cli.serve.errors import BadRequest
from gptoss_cli.serve.policy.model import Policy, Rule
from gptoss_cli.serve.policy.redact import rewrite

ROLE_OF = {"function": "tool"}  # legacy function results are tool output
_TEXT_PARTS = ("text", "input_text")


class PolicyViolation(BadRequest):
    code = "policy_violation"

    def __init__(self, rule_id: str, param: str) -> None:
        super().__init__(f"The request was refused by the server's policy (rule {rule_id!r}).", param=param)
        self.rule_id = rule_id


def apply_input(policy: Policy, raw: dict[str, Any], kind: str, on_hit: Callable[[Rule], None]) -> dict[str, Any] | None:
    """Check and rewrite ``raw`` (a chat or completion request body) under ``policy``; None: unchanged."""
    texts = list(_texts(raw, kind))
    changed: dict[tuple[Any, ...], str] = {}
    for path, role, text, param in texts:  # every block rule on every text first: a refusal redacts nothing
        for rule in policy.input_rules(role):
            if rule.action == "block" and any(m.find(text, 0) is not None for m in rule.matchers):
                on_hit(rule)
                raise PolicyViolation(rule.id, param)
    for path, role, text, _ in texts:
        rules = [r for r in policy.input_rules(role) if r.action == "redact"]
        if rules:
            new, _ = rewrite(rules, text, on_hit)
            if new != text:
                changed[path] = new
    glossary = policy.glossary() if policy.instruct and kind == "chat" else ""
    if not changed and not glossary:
        return None
    out = copy.deepcopy(raw)
    for path, new in changed.items():
        _set(out, path, new)
    if glossary:
        _add_instructions(out, glossary)
    return out


def _texts(raw: dict[str, Any], kind: str) -> Any:
    """(path, role, text, param) for every text the model reads."""
    if kind != "chat":
        prompt = raw.get("prompt")
        if isinstance(prompt, str):
            yield ("prompt",), "user", prompt, "prompt"
        elif isinstance(prompt, list):
            for i, p in enumerate(prompt):
                if isinstance(p, str):
                    yield ("prompt", i), "user", p, f"prompt[{i}]"
        return
    for i, msg in enumerate(raw.get("messages") or []):
        if not isinstance(msg, dict):
            continue
        role = ROLE_OF.get(msg.get("role"), msg.get("role"))
        content = msg.get("content")
        if isinstance(content, str):
            yield ("messages", i, "content"), role, content, f"messages[{i}].content"
        elif isinstance(content, list):
            for j, part in enumerate(content):
                if isinstance(part, dict) and part.get("type") in _TEXT_PARTS and isinstance(part.get("text"), str):
                    yield ("messages", i, "content", j, "text"), role, part["text"], f"messages[{i}].content[{j}]"


def _set(obj: Any, path: tuple[Any, ...], value: str) -> None:
    for key in path[:-1]:
        obj = obj[key]
    obj[path[-1]] = value


def _add_instructions(raw: dict[str, Any], text: str) -> None:
    messages = raw.get("messages")
    if not isinstance(messages, list):
        return
    first = messages[0] if messages else None
    if isinstance(first, dict) and first.get("role") in ("system", "developer") and isinstance(first.get("content"),
                                                                                               str):
        first["content"] = f"{first['content']}\n\n{text}" if first["content"] else text
    else:
        messages.insert(0, {"role": "system", "content": text})


__all__ = ["PolicyViolation", "apply_input"]
