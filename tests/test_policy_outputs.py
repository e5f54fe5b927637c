"""``OutputFilter`` on synthetic relayed streams (shapes vLLM, llama.cpp and Ollama send): every split of every
channel, empty ``content`` beside reasoning, two tool calls, chunks that are never modified in place."""

from __future__ import annotations

import asyncio
import copy
import json

import pytest

from gptoss_cli.serve.policy import OutputFilter, parse_policy
from tests.policy_fixtures import EMAIL, HOSPITAL, PHONE

POLICY = parse_policy(HOSPITAL)
REASONING = f"用户留下了{EMAIL}，需要回电{PHONE}。"
CONTENT = f"好的，已通知 {EMAIL}。诊断：心梗。"
ARGS = [json.dumps({"phone": PHONE}), json.dumps({"note": f"mail {EMAIL}"}, ensure_ascii=False)]


def chunk(delta, finish=None):
    return {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}


def stream(i: int, j: int, rkey: str = "reasoning") -> list[dict]:
    """Reasoning split at i, content at j, each tool call's arguments at j % len."""
    out = [chunk({"role": "assistant", "content": ""})]
    out += [chunk({rkey: part, "content": ""}) for part in (REASONING[:i], REASONING[i:]) if part]
    out += [chunk({"content": part}) for part in (CONTENT[:j], CONTENT[j:]) if part]
    for k, args in enumerate(ARGS):
        out.append(chunk({"tool_calls": [{"index": k, "id": f"call_{k}", "type": "function",
                                          "function": {"name": "f", "arguments": ""}}]}))
        cut = j % len(args)
        out += [chunk({"tool_calls": [{"index": k, "function": {"arguments": part}}]})
                for part in (args[:cut], args[cut:]) if part]
    out.append(chunk({}, "tool_calls"))
    return out


def run(items: list[dict]) -> list[dict]:
    async def go():
        async def gen():
            for item in items:
                yield item
        return [c async for c in OutputFilter(POLICY, lambda rule: None, "chat").chunks(gen())]
    return asyncio.run(go())


def joined(chunks: list[dict]) -> tuple[str, str, list[str]]:
    reasoning, content, args = "", "", ["", ""]
    for c in chunks:
        delta = c["choices"][0]["delta"]
        reasoning += delta.get("reasoning") or delta.get("reasoning_content") or ""
        content += delta.get("content") or ""
        for tc in delta.get("tool_calls") or []:
            args[tc["index"]] += tc["function"].get("arguments") or ""
    return reasoning, content, args


EXPECTED = ("用户留下了[已隐去]，需要回电[已隐去]。", "好的，已通知 [已隐去]。诊断：心肌梗死。",
            [json.dumps({"phone": "[已隐去]"}, ensure_ascii=False), json.dumps({"note": "mail [已隐去]"}, ensure_ascii=False)])


@pytest.mark.parametrize("rkey", ["reasoning", "reasoning_content"])
def test_every_split_of_every_channel(rkey):
    for i in range(len(REASONING) + 1):
        for j in range(0, len(CONTENT) + 1, 3):
            items = stream(i, j, rkey)
            before = copy.deepcopy(items)
            out = run(items)
            assert items == before  # nothing changed in place (chunks may be cached)
            assert joined(out) == EXPECTED, (i, j)
            for c in out:
                text = json.dumps(c, ensure_ascii=False)
                assert EMAIL not in text and PHONE not in text and "心梗" not in text
            assert out[-1]["choices"][0]["finish_reason"] == "tool_calls"
            starts = [tc for c in out for tc in c["choices"][0]["delta"].get("tool_calls") or [] if tc.get("id")]
            assert [tc["id"] for tc in starts] == ["call_0", "call_1"]


def test_a_whole_reply_is_rewritten_without_touching_the_original():
    reply = {"id": "x", "object": "chat.completion", "created": 1, "model": "m", "choices": [{
        "index": 0, "finish_reason": "tool_calls", "message": {
            "role": "assistant", "content": CONTENT, "reasoning": REASONING, "reasoning_content": REASONING,
            "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": ARGS[0]}}]}}]}
    before = copy.deepcopy(reply)
    out = OutputFilter(POLICY, lambda rule: None, "chat").reply(reply)
    assert reply == before
    msg = out["choices"][0]["message"]
    assert (msg["reasoning"], msg["content"]) == EXPECTED[:2] and msg["reasoning_content"] == EXPECTED[0]
    assert msg["tool_calls"][0]["function"]["arguments"] == EXPECTED[2][0]
    assert out["choices"][0]["finish_reason"] == "tool_calls"


def test_a_stream_that_ends_without_a_finish_chunk_still_releases_what_it_held():
    out = run([chunk({"content": "写信给 "}), chunk({"content": "bob@example.org"})])
    assert joined(out)[1] == "写信给 [已隐去]"
