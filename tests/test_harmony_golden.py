"""Golden tests against the official openai-harmony library (loaded offline from the shipped gptoss_cli/vocab).

Rendering: our prompt text equals the library's rendered tokens decoded, and our text encoded with o200k_harmony
equals the library's tokens. Parsing: our messages equal ``StreamableParser(strict=False)``'s on well-formed and
on the malformed output it accepts; where it raises or keeps markup in the text, the case says so and why.
"""

from __future__ import annotations

import pytest

from gptoss_cli.serve.harmony import HarmonyStreamParser, RenderOptions, render_chat
from tests.harmony_corpus import (
    CONVERSATIONS,
    DATE,
    O200K_SHA256,
    SEQUENCES,
    Case,
    Seq,
    library_conversation,
    o200k_harmony,
    o200k_sha256,
    reference_encoding,
)

openai_harmony = pytest.importorskip("openai_harmony")


def test_vocabulary_fixture_is_the_real_o200k_base():
    assert o200k_sha256() == O200K_SHA256


def ours(case: Case) -> str:
    options = RenderOptions(
        reasoning_effort=case.effort, current_date=DATE, knowledge_cutoff=case.knowledge_cutoff,
        model_identity=case.identity,
    )
    return render_chat(case.messages, tools=case.tools, tool_choice=case.tool_choice,
                       response_format=case.response_format, options=options)


def library_tokens(case: Case, *, keep_all_reasoning: bool = False) -> list[int]:
    conv = library_conversation(case, keep_all_reasoning=keep_all_reasoning)
    return reference_encoding().render_conversation_for_completion(conv, openai_harmony.Role.ASSISTANT)


def test_corpus_is_large_enough():
    assert len(CONVERSATIONS) >= 30
    assert len(SEQUENCES) >= 30
    assert len({c.name for c in CONVERSATIONS}) == len(CONVERSATIONS)
    assert len({s.name for s in SEQUENCES}) == len(SEQUENCES)


@pytest.mark.parametrize("case", CONVERSATIONS, ids=lambda c: c.name)
def test_render_is_byte_identical_to_openai_harmony(case: Case):
    expected = library_tokens(case)
    text = ours(case)
    assert text == reference_encoding().decode(expected)
    assert text.endswith("<|start|>assistant")
    if (case.response_format or {}).get("type") == "json_schema":
        # The library has no "Response Formats" section: the golden conversation appends it as a second text
        # part, which the library tokenizes on its own; one prompt string is tokenized across that seam.
        return
    assert o200k_harmony().encode(text) == expected


@pytest.mark.parametrize("case", CONVERSATIONS, ids=lambda c: c.name)
def test_earlier_turn_analysis_is_dropped_where_documented(case: Case):
    """Where the library left to itself keeps an earlier turn's analysis, we drop it (and say so in the case)."""
    differs = library_tokens(case, keep_all_reasoning=True) != library_tokens(case)
    assert differs == case.drops_earlier_analysis


def _library_parse(ids: list[int]) -> tuple[list[tuple], str | None]:
    parser = openai_harmony.StreamableParser(reference_encoding(), openai_harmony.Role.ASSISTANT, strict=False)
    try:
        for tok in ids:
            parser.process(tok)
        parser.process_eos()
    except openai_harmony.HarmonyError as exc:
        return [], str(exc)
    messages = [(m.author.role.value, m.channel, m.recipient, m.content_type, m.content[0].text)
                for m in parser.messages]
    return messages, None


@pytest.mark.parametrize("seq", SEQUENCES, ids=lambda s: s.name)
def test_parser_agrees_with_streamable_parser(seq: Seq):
    ids = o200k_harmony().encode(seq.text)
    parser = HarmonyStreamParser(o200k_harmony())
    for tok in ids:
        parser.feed(tok)
    parser.finish()
    mine = [(m.role, m.channel, m.recipient, m.content_type, m.text) for m in parser.messages]
    theirs, error = _library_parse(ids)
    if seq.library == "raises":
        assert error is not None, seq.why
    elif seq.library == "same":
        assert error is None
        assert mine == theirs
    else:
        assert error is None and mine != theirs, seq.why
    # whatever the library does, a message we route to the client carries no markup
    for msg in parser.messages:
        assert "<|" not in msg.text


def test_streamed_text_matches_library_deltas():
    """Per message, the library's per-token deltas concatenate to the text our deltas carried."""
    tok = o200k_harmony()
    for seq in (s for s in SEQUENCES if s.library == "same"):
        ids = tok.encode(seq.text)
        lib = openai_harmony.StreamableParser(reference_encoding(), openai_harmony.Role.ASSISTANT, strict=False)
        streamed: dict[int, str] = {}
        for t in ids:
            lib.process(t)
            if lib.last_content_delta:
                index = len(lib.messages)
                streamed[index] = streamed.get(index, "") + lib.last_content_delta
        parser = HarmonyStreamParser(tok)
        for t in ids:
            parser.feed(t)
        parser.finish()
        for index, text in streamed.items():
            assert parser.messages[index].text == text, seq.name


def test_invalid_utf8_becomes_a_replacement_character_like_the_library():
    tok = o200k_harmony()
    ids = tok.encode("<|channel|>final<|message|>") + [9552, 9552] + tok.encode("worked<|return|>")
    parser = HarmonyStreamParser(tok)
    text = "".join(d.text for t in ids for d in parser.feed(t)) + "".join(d.text for d in parser.finish())
    messages, error = _library_parse(ids)
    assert error is None
    assert text == messages[0][4]
    assert "\ufffd" in text and text.endswith("worked")


DEFAULTS = [1.5, 100.0, 1e16, 1e21, 1e22, 1e-5, 1e-7, 1.25e-7, 0.1, 123456.789, -0.5, 0.0, 2**63, 2**64 - 1, 2**70,
            -(2**63), 10**16, "text \"quoted\"", None, True, [1, 2.5, "x\n\u00e9\u0001"], {"k": {"z": 1e100}}]


def test_default_values_print_like_the_library():
    schema = {"type": "object", "properties": {f"p{i}": {"default": v} for i, v in enumerate(DEFAULTS)}}
    tools = [{"type": "function", "function": {"name": "f", "parameters": schema}}]
    case = Case("defaults", [{"role": "user", "content": "x"}], tools=tools)
    assert ours(case) == reference_encoding().decode(library_tokens(case))
