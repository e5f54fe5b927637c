"""``--policy`` over the real app (scripted engine: one token per UTF-8 byte, so every secret is split across every
token boundary, CJK characters mid-byte included): input block and redact, the glossary, output redaction on the
answer, the reasoning and tool arguments, stop with ``content_filter``, completions, metrics and the access log."""

from __future__ import annotations

import json

import pytest

from gptoss_cli.serve.engines.scripted import ByteTokenizer
from tests.policy_fixtures import CARD, EMAIL, ID_X, PHONE, write_policy
from tests.serve_fixtures import ready_client, scripted, sse_events

ANSWER = (f"<|channel|>analysis<|message|>用户的邮箱是{EMAIL}，电话{PHONE}。<|end|>"
          f"<|start|>assistant<|channel|>final<|message|>已记录：{EMAIL}，身份证{ID_X}，病房WARD-042。"
          f"诊断为心梗（heart attack）。<|return|>")
STOPPING = ("<|channel|>final<|message|>公开信息如下。关于猎鹰计划，细节是" + "机密内容" * 50 + "<|return|>")
TOOL = ("<|channel|>analysis<|message|>Look the patient up.<|end|><|start|>assistant<|channel|>commentary "
        f'to=functions.lookup <|constrain|>json<|message|>{{"phone": "{PHONE}", "ward": "WARD-042"}}<|call|>')
SECRETS = (EMAIL, PHONE, ID_X, "WARD-042", "心梗", "heart attack")


def chat(client, content="你好", **extra):
    return client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": content}], **extra})


def prompt_of(engine) -> str:
    return ByteTokenizer().decode(engine.prompts[-1])


@pytest.fixture
def policy(tmp_path):
    return str(write_policy(tmp_path))


def test_a_blocked_request_is_a_400_naming_the_rule_never_the_text(policy):
    app, engine = scripted(ANSWER, policy=policy)
    with ready_client(app) as client:
        r = chat(client, f"我的身份证号是{ID_X}，卡号{CARD}")
        metrics = client.get("/metrics").text
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["code"] == "policy_violation" and error["type"] == "invalid_request_error"
    assert "refuse-id-numbers" in error["message"] and error["param"] == "messages[0].content"
    assert ID_X not in r.text and CARD not in r.text
    assert engine.prompts == []  # the model never saw it
    assert 'gptoss_policy_decisions_total{action="block",key="-",rule="refuse-id-numbers"} 1.0' in metrics


def test_block_rules_apply_only_to_their_roles(policy):
    app, engine = scripted(ANSWER, policy=policy)
    with ready_client(app) as client:
        r = client.post("/v1/chat/completions", json={"messages": [
            {"role": "system", "content": f"病人身份证 {ID_X} 仅供参考"},  # roles = user, tool: not blocked
            {"role": "user", "content": [{"type": "text", "text": "请回答"}, {"type": "text", "text": f"电话{PHONE}"}]},
        ]})
        tool = client.post("/v1/chat/completions", json={"messages": [
            {"role": "user", "content": "查"},
            {"role": "assistant", "tool_calls": [{"id": "c1", "function": {"name": "lookup", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": f'{{"id": "{ID_X}"}}'},
        ]})
    assert r.status_code == 200
    prompt = prompt_of(engine)
    assert ID_X in prompt  # system text was not in the rule's roles
    assert PHONE not in prompt and "电话[联系方式]" in prompt  # a content part redacted before the model saw it
    assert tool.status_code == 400 and tool.json()["error"]["param"] == "messages[2].content"


def test_the_glossary_joins_the_developer_instructions(policy):
    app, engine = scripted(ANSWER, policy=policy)
    with ready_client(app) as client:
        chat(client)
        client.post("/v1/chat/completions", json={"messages": [{"role": "system", "content": "You are terse."},
                                                               {"role": "user", "content": "hi"}]})
    prompts = [ByteTokenizer().decode(p) for p in engine.prompts]
    for prompt in prompts:
        developer = prompt.split("<|start|>developer<|message|>")[1].split("<|end|>")[0]
        assert "# Terminology" in developer and "- 心肌梗死 (not: 心梗, 心脏病发作)" in developer
    assert "You are terse.\n\n# Terminology" in prompts[1]


def test_output_is_redacted_in_answer_reasoning_and_glossary(policy):
    log: list[str] = []
    from gptoss_cli.serve.openai.app import create_app
    app, engine = scripted(ANSWER, policy=policy)
    app = create_app(app.state.server.settings, engine, emit_access_log=log.append)
    with ready_client(app) as client:
        r = chat(client)
    msg = r.json()["choices"][0]["message"]
    assert msg["content"] == "已记录：[已隐去]，身份证[已隐去]，病房WARD-***。诊断为心肌梗死（myocardial infarction）。"
    assert msg["reasoning_content"] == msg["reasoning"] == "用户的邮箱是[已隐去]，电话[已隐去]。"
    assert r.json()["choices"][0]["finish_reason"] == "stop"
    line = next(x for x in log if "/v1/chat/completions" in x)
    assert "policy=mask-pii-output,ward-codes,term:心肌梗死,term:myocardial_infarction" in line
    assert not any(s in line for s in SECRETS)


def test_streamed_output_never_shows_a_secret_in_any_chunk(policy):
    app, _ = scripted(ANSWER, ANSWER, policy=policy)
    with ready_client(app) as client:
        whole = chat(client).json()["choices"][0]["message"]
        r = chat(client, stream=True, stream_options={"include_usage": True})
    events = sse_events(r.text)
    assert events[-1] == "[DONE]" and events[-2]["choices"] == [] and events[-2]["usage"]["completion_tokens"] > 0
    deltas = [e["choices"][0]["delta"] for e in events[:-2]]
    for event in events[:-1]:
        text = json.dumps(event, ensure_ascii=False)
        assert not any(s in text for s in SECRETS), text
    assert "".join(d.get("content") or "" for d in deltas) == whole["content"]
    assert "".join(d.get("reasoning_content") or "" for d in deltas) == whole["reasoning_content"]
    assert "".join(d.get("reasoning") or "" for d in deltas) == whole["reasoning"]
    assert events[-3]["choices"][0]["finish_reason"] == "stop"
    assert len(deltas) > 25  # still streamed, character by character where nothing is held, not buffered whole


def test_a_stop_rule_ends_the_stream_with_content_filter(policy):
    app, engine = scripted(STOPPING, STOPPING, policy=policy)
    engine.delay = 0.001
    with ready_client(app) as client:
        r = chat(client, stream=True)
        whole = chat(client).json()["choices"][0]
    events = sse_events(r.text)
    content = "".join(e["choices"][0]["delta"].get("content") or "" for e in events[:-1])
    assert content == "公开信息如下。关于"
    assert events[-2]["choices"][0] == {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "content_filter"}
    assert "机密" not in r.text and "猎鹰" not in r.text
    assert engine.cancelled >= 1  # the generation behind it was stopped, not run to its end
    assert whole["message"]["content"] == "公开信息如下。关于" and whole["finish_reason"] == "content_filter"


def test_tool_arguments_are_redacted_and_stay_json(policy):
    app, _ = scripted(TOOL, TOOL, policy=policy)
    with ready_client(app) as client:
        whole = chat(client, tools=[{"type": "function", "function": {"name": "lookup"}}]).json()
        r = chat(client, stream=True, tools=[{"type": "function", "function": {"name": "lookup"}}])
    call = whole["choices"][0]["message"]["tool_calls"][0]
    # ward-codes has the default channels (final only): tool arguments keep the ward
    assert json.loads(call["function"]["arguments"]) == {"phone": "[已隐去]", "ward": "WARD-042"}
    events = sse_events(r.text)[:-1]
    args = "".join(tc["function"].get("arguments") or "" for e in events
                   for tc in e["choices"][0]["delta"].get("tool_calls") or [])
    assert args == call["function"]["arguments"] and PHONE not in r.text
    assert events[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_completions_endpoint_uses_the_same_rules(policy):
    app, engine = scripted(ANSWER, ANSWER, policy=policy)
    with ready_client(app) as client:
        blocked = client.post("/v1/completions", json={"prompt": f"身份证{ID_X}"})
        whole = client.post("/v1/completions", json={"prompt": f"联系 {EMAIL}"})
        streamed = client.post("/v1/completions", json={"prompt": "hi", "stream": True})
    assert blocked.status_code == 400 and blocked.json()["error"]["param"] == "prompt"
    assert EMAIL not in ByteTokenizer().decode(engine.prompts[0])
    text = whole.json()["choices"][0]["text"]
    assert text.startswith("已记录：[已隐去]") and "心肌梗死" in text
    events = sse_events(streamed.text)[:-1]
    assert "".join(e["choices"][0]["text"] for e in events) == text
    assert not any(s in streamed.text for s in SECRETS)


def test_without_a_policy_nothing_changes():
    app, engine = scripted(ANSWER)
    with ready_client(app) as client:
        r = chat(client, f"身份证{ID_X}")
    assert r.status_code == 200 and EMAIL in r.json()["choices"][0]["message"]["content"]
    assert ID_X in prompt_of(engine)


def test_without_a_policy_the_policy_code_is_not_even_loaded():
    """Policy off costs nothing: a request through the real app imports no module of serve/policy/."""
    import subprocess
    import sys
    from pathlib import Path

    code = ("from tests.serve_fixtures import scripted, ready_client\nimport sys\napp, _ = scripted()\n"
            "with ready_client(app) as c:\n    assert c.post('/v1/chat/completions', json={'messages': "
            "[{'role': 'user', 'content': 'hi'}]}).status_code == 200\n"
            "print(sorted(m for m in sys.modules if m.startswith('gptoss_cli.serve.policy')))\n")
    root = Path(__file__).resolve().parent.parent
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=root)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_a_big_request_is_checked_too(policy):
    """Bodies over 64 KiB are checked in a worker thread: the same rules, the same answers."""
    app, engine = scripted(ANSWER, policy=policy)
    engine.max_model_len = 10**6  # one token per byte: the filler is ~200k tokens
    filler = "普通的病历文字。" * 9000
    with ready_client(app) as client:
        ok = chat(client, filler + f"电话 {PHONE}", max_tokens=50)
        refused = chat(client, filler + ID_X)
    assert ok.status_code == 200 and PHONE not in prompt_of(engine) and "电话 [联系方式]" in prompt_of(engine)
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "policy_violation"


REASONING_STOP = ("<|channel|>analysis<|message|>想一想猎鹰计划的内容。<|end|><|start|>assistant<|channel|>final"
                  "<|message|>这是回答。<|return|>")


@pytest.mark.parametrize("path,body", [
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}]}),
    ("/v1/completions", {"prompt": "hi"}),
])
def test_a_stop_in_the_reasoning_drops_the_answer_after_it(policy, path, body):
    app, _ = scripted(REASONING_STOP, REASONING_STOP, policy=policy)
    with ready_client(app) as client:
        whole = client.post(path, json=body).json()["choices"][0]
        r = client.post(path, json={**body, "stream": True})
    assert "这是回答" not in r.text and "猎鹰" not in r.text and "这是回答" not in json.dumps(whole, ensure_ascii=False)
    events = sse_events(r.text)[:-1]
    assert events[-1]["choices"][0]["finish_reason"] == "content_filter" and whole["finish_reason"] == "content_filter"
    held = whole.get("message", whole)
    assert held["reasoning_content"] == "想一想"
    reasoning = "".join((e["choices"][0].get("delta") or e["choices"][0]).get("reasoning_content") or ""
                        for e in events)
    assert reasoning == "想一想"
    if "text" in whole:
        assert whole["text"] == "" and all("text" in e["choices"][0] for e in events)
