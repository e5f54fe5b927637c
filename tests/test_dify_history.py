"""Issue 16 item 1: reasoning wrappers Dify stores in assistant history never reach the model as answer text.

The strings are the ones real Dify 0.15.3 and the 1.x openai_api_compatible plugin were seen to store
(reference/dify-api.md §9).
"""

from __future__ import annotations

import pytest

from gptoss_cli.serve.harmony import RenderOptions, render_chat
from gptoss_cli.serve.harmony.reasoning_wrappers import split_reasoning, strip_reasoning
from gptoss_cli.serve.engines.upstream.normalise import upstream_body

FIXED = RenderOptions(current_date="2026-11-28")
DETAILS_015 = ('<details style="color:gray;background-color: #f8f8f8;padding: 8px;border-radius: 4px;" open> '
               "<summary> Thinking... </summary>")
REASONING = "The user asks who I am. I am a small demo model."
ANSWER = "I am gpt-oss, a model served by gptoss.\n\n- one\n- two"
STORED_015 = f"{DETAILS_015}{REASONING}</details>{ANSWER}"
STORED_PLUGIN = f"<think>\n{REASONING}\n</think>{ANSWER}"


@pytest.mark.parametrize(("stored", "answer", "reasoning"), [
    (STORED_015, ANSWER, REASONING),  # Dify 0.15.3, exactly as stored
    (f"{DETAILS_015}\n{REASONING}</details>\n\n{ANSWER}", ANSWER, REASONING),  # builds with newlines
    (f"{DETAILS_015}{REASONING}", "", REASONING),  # cut off inside the reasoning: no </details>
    ('<details open><summary>Thinking...</summary>r</details>A', "A", "r"),
    ("<DETAILS style='x'>\n  <summary> Thinking\u2026 </summary>\nr\n</details >A", "A", "r"),
    (STORED_PLUGIN, ANSWER, REASONING),  # the 1.x plugin
    (f"<think>\n{REASONING}\n</think>\n\n{ANSWER}", ANSWER, REASONING),
    ("<think/>\nr\n</think/>A", "A", "r"),  # other plugins
    ('<think type="reasoning">r</think >A', "A", "r"),
    ("<think>a</think>B<think>c</think>D", "BD", "a\n\nc"),
    ("dangling</think>\nAnswer", "Answer", "dangling"),
    ("<think>\ncut off while reasoning", "", "cut off while reasoning"),
    (f"{DETAILS_015}a</details>B<think>\nc\n</think>D", "BD", "a\n\nc"),  # an agent's rounds, mixed
])
def test_wrappers_are_split_off_and_the_answer_kept_exactly(stored: str, answer: str, reasoning: str) -> None:
    assert split_reasoning(stored) == (answer, reasoning)
    assert strip_reasoning(stored) == answer


@pytest.mark.parametrize("text", [
    ANSWER,
    "<details><summary>Click to expand</summary>a table</details> is answer text",
    "Use the <thinking> tag, or <b>bold</b>.",
    "  leading and trailing spaces stay  ",
    "Wrap it in a <think> tag and you are done.",
])
def test_other_text_is_left_alone(text: str) -> None:
    assert split_reasoning(text) == (text, "")


@pytest.mark.parametrize("stored", [STORED_015, STORED_PLUGIN])
def test_renderer_puts_only_the_answer_in_the_final_channel(stored: str) -> None:
    messages = [{"role": "user", "content": "Who are you?"}, {"role": "assistant", "content": stored},
                {"role": "user", "content": "And what can you do?"}]
    text = render_chat(messages, options=FIXED)
    assert f"<|start|>assistant<|channel|>final<|message|>{ANSWER}<|end|>" in text
    for leaked in ("<details", "Thinking...", "</details>", "<think>", "</think>", REASONING):
        assert leaked not in text  # an earlier turn's reasoning is dropped, as harmony wants


def test_reasoning_of_the_current_turn_goes_to_analysis() -> None:
    """After the last user message (a tool round trip), the wrapped reasoning is analysis, not final."""
    messages = [{"role": "user", "content": "Weather in Paris?"},
                {"role": "assistant", "content": f"{DETAILS_015}Need the tool.</details>",
                 "tool_calls": [{"id": "c1", "type": "function",
                                 "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}]},
                {"role": "tool", "tool_call_id": "c1", "content": "sunny"}]
    text = render_chat(messages, options=FIXED)
    assert "<|channel|>analysis<|message|>Need the tool.<|end|>" in text
    assert "<details" not in text and "Thinking..." not in text


@pytest.mark.parametrize("stored", [STORED_015, STORED_PLUGIN])
def test_upstream_history_loses_the_wrappers(stored: str) -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": stored},
                                       {"role": "user", "content": "b"}]}
    sent = upstream_body(body, model="served", stream=False)
    assert sent["messages"][1]["content"] == ANSWER
