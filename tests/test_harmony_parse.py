"""The incremental harmony parser: deltas, tool calls, UTF-8 safety, self-healing, tokenizer independence."""

from __future__ import annotations

import random
import re

import pytest

from gptoss_cli.serve.engines.interface import HARMONY_SPECIAL_TOKENS

from gptoss_cli.serve.engines.scripted import ByteTokenizer
from gptoss_cli.serve.harmony import Delta, HarmonyStreamParser, ParsedCompletion, parse_completion
from gptoss_cli.serve.harmony.parse import new_call_id, parse_header
from tests.harmony_corpus import SEQUENCES, Seq, o200k_harmony

RESERVED = "<|reserved_200013|>"
REAL_IDS = {**HARMONY_SPECIAL_TOKENS, RESERVED: 200013}
# the same specials at unrelated ids, to prove nothing depends on the real o200k_harmony numbers
SHIFTED_IDS = {name: 300 + i for i, name in enumerate(sorted(REAL_IDS))}


def tokenizers():
    return {
        "o200k_harmony": o200k_harmony(),
        "bytes_real_ids": ByteTokenizer(REAL_IDS),
        "bytes_shifted_ids": ByteTokenizer(SHIFTED_IDS),
    }


def run(tokenizer, text: str, **kw) -> tuple[list[Delta], HarmonyStreamParser]:
    parser = HarmonyStreamParser(tokenizer, **kw)
    deltas = [d for tok in tokenizer.encode(text) for d in parser.feed(tok)]
    return deltas + parser.finish(), parser


def summary(result: ParsedCompletion) -> tuple:
    return result.content, result.reasoning, tuple((c.name, c.arguments) for c in result.tool_calls), result.finish_reason


@pytest.mark.parametrize("tok_name", ["o200k_harmony", "bytes_real_ids", "bytes_shifted_ids"])
@pytest.mark.parametrize("seq", SEQUENCES, ids=lambda s: s.name)
def test_corpus_results_with_every_tokenizer(seq: Seq, tok_name: str):
    tokenizer = tokenizers()[tok_name]
    result = parse_completion(tokenizer, tokenizer.encode(seq.text))
    assert summary(result) == (seq.content, seq.reasoning, seq.calls, seq.finish)
    for text in (result.content, result.reasoning, *(c.arguments for c in result.tool_calls)):
        assert "<|" not in text and "|>" not in text


def test_specials_are_looked_up_by_text():
    shifted = ByteTokenizer(SHIFTED_IDS)
    assert shifted.token_id("<|start|>") != HARMONY_SPECIAL_TOKENS["<|start|>"]
    deltas, parser = run(shifted, "<|channel|>analysis<|message|>r<|end|><|start|>assistant<|channel|>final<|message|>ok<|return|>")
    assert [d.kind for d in deltas] == ["reasoning", "content", "content"]  # one delta per byte
    assert "".join(d.text for d in deltas if d.kind == "content") == "ok"
    assert parser.finish_reason == "stop"


def test_tool_call_deltas_shape():
    tok = ByteTokenizer()
    text = '<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{"city":"Paris"}<|call|>'
    deltas, parser = run(tok, text, id_factory=lambda: "call_fixed")
    start, *args = deltas
    assert start == Delta("tool_call_start", index=0, call_id="call_fixed", name="get_weather")
    assert all(d.kind == "tool_call_args" and d.index == 0 and d.call_id is None for d in args)
    assert "".join(d.text for d in args) == '{"city":"Paris"}'
    assert parser.finish_reason == "tool_calls"


def test_default_call_ids_look_like_openai_ones():
    ids = {new_call_id() for _ in range(50)}
    assert len(ids) == 50
    assert all(re.fullmatch(r"call_[A-Za-z0-9]{24}", i) for i in ids)
    result = parse_completion(ByteTokenizer(), ByteTokenizer().encode(
        "<|channel|>commentary to=functions.f json<|message|>{}<|call|>"))
    assert re.fullmatch(r"call_[A-Za-z0-9]{24}", result.tool_calls[0].id)


def test_two_calls_get_increasing_indexes():
    text = ("<|channel|>commentary to=functions.a json<|message|>{}<|end|>"
            "<|start|>assistant<|channel|>commentary to=functions.b json<|message|>{\"x\":1}<|call|>")
    result = parse_completion(ByteTokenizer(), ByteTokenizer().encode(text), id_factory=iter(["c1", "c2"]).__next__)
    assert [(c.id, c.name, c.arguments) for c in result.tool_calls] == [("c1", "a", "{}"), ("c2", "b", '{"x":1}')]
    assert result.finish_reason == "tool_calls"


@pytest.mark.parametrize("tok_name", ["o200k_harmony", "bytes_real_ids"])
def test_multibyte_text_is_never_split(tok_name: str):
    tokenizer = tokenizers()[tok_name]
    text = "€ 😀 東京 — ça ✓"
    deltas, _ = run(tokenizer, f"<|channel|>final<|message|>{text}<|return|>")
    assert all("\ufffd" not in d.text for d in deltas)
    assert "".join(d.text for d in deltas) == text
    if tok_name == "bytes_real_ids":
        assert len(deltas) > 5  # streamed in pieces, each a whole character


def test_invalid_bytes_degrade_to_replacement_characters():
    tok = ByteTokenizer()
    ids = tok.encode("<|channel|>final<|message|>a") + [0xFF, 0xE2, 0x82] + tok.encode("b<|return|>")
    result = parse_completion(tok, ids)
    assert result.content.startswith("a\ufffd") and result.content.endswith("b")
    held = tok.encode("<|channel|>final<|message|>") + [0xF0, 0x9F]  # cut inside a character by the length limit
    assert parse_completion(tok, held).content == "\ufffd"


def test_unknown_and_out_of_range_ids_are_dropped():
    tok = o200k_harmony()
    ids = tok.encode("<|channel|>final<|message|>Hel") + [10**9, 200013, 199998] + tok.encode("lo<|return|>")
    assert parse_completion(tok, ids).content == "Hello"
    byte_tok = ByteTokenizer()
    ids = byte_tok.encode("<|channel|>final<|message|>Hel") + [4096] + byte_tok.encode("lo<|return|>")
    assert parse_completion(byte_tok, ids).content == "Hello"


def test_feed_after_stop_and_repeated_finish_are_harmless():
    tok = ByteTokenizer()
    parser = HarmonyStreamParser(tok)
    for t in tok.encode("<|channel|>final<|message|>Hi<|return|>"):
        parser.feed(t)
    assert parser.feed(tok.encode("x")[0]) == []
    assert parser.finish() == [] and parser.finish() == []
    assert parser.finish_reason == "stop"


def test_refusal_without_markup_streams_before_the_end():
    tok = ByteTokenizer()
    parser = HarmonyStreamParser(tok)
    got = [d for t in tok.encode("I'm sorry, but I can't help with that.") for d in parser.feed(t)]
    assert got and all(d.kind == "content" for d in got)  # content flows before any stop token
    assert "".join(d.text for d in got) == "I'm sorry, but I can't help with that."


def test_a_tokenizer_without_some_specials_still_works():
    tok = ByteTokenizer({"<|start|>": 300, "<|end|>": 301, "<|message|>": 302, "<|channel|>": 303, "<|return|>": 304})
    result = parse_completion(tok, tok.encode("<|channel|>analysis<|message|>r<|end|><|start|>assistant"
                                              "<|channel|>final<|message|>ok<|return|>"))
    assert (result.reasoning, result.content, result.finish_reason) == ("r", "ok", "stop")


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("<|channel|>final", ("assistant", "final", None, None)),
        ("assistant to=functions.x<|channel|>commentary json", ("assistant", "commentary", "functions.x", "json")),
        ("<|channel|>commentary to=functions.x <|constrain|>json",
         ("assistant", "commentary", "functions.x", "<|constrain|>json")),
        ("<|channel|>commentary to=functions.x<|constrain|>json",
         ("assistant", "commentary", "functions.x", "<|constrain|>json")),
        ("functions.x to=assistant<|channel|>commentary", ("tool", "commentary", "assistant", None)),
        ("user", ("user", None, None, None)),
        ("analysis", ("assistant", "analysis", None, None)),
        ("assistantfinal", ("assistant", "final", None, None)),
        ("<|channel|>analysis to=python code", ("assistant", "analysis", "python", "code")),
    ],
)
def test_parse_header(header: str, expected: tuple):
    head = parse_header(header)
    assert (head.role, head.channel, head.recipient, head.content_type) == expected


FRAGMENTS = [
    "<|start|>", "<|end|>", "<|message|>", "<|channel|>", "<|constrain|>", "<|return|>", "<|call|>", RESERVED,
    "assistant", "analysis", "final", "commentary", " to=functions.get_weather", " to=python", " json", "user",
    "Hello", " world", ", and", "{\"a\": 1}", "\n", "é", "😀", " ", "I'm sorry", "assistantfinal", "functions.x",
]


@pytest.mark.parametrize("tok_name", ["o200k_harmony", "bytes_real_ids", "bytes_shifted_ids"])
def test_random_markup_never_leaks_and_never_raises(tok_name: str):
    tokenizer = tokenizers()[tok_name]
    rng = random.Random(20261128)
    for _ in range(300):
        text = "".join(rng.choice(FRAGMENTS) for _ in range(rng.randint(1, 25)))
        ids = tokenizer.encode(text)
        cut = ids[: rng.randint(0, len(ids))] if rng.random() < 0.3 else ids
        result = parse_completion(tokenizer, cut)
        for piece in (result.content, result.reasoning, *(c.arguments for c in result.tool_calls)):
            assert "<|" not in piece and "|>" not in piece, text
        for call in result.tool_calls:
            assert re.fullmatch(r"[A-Za-z0-9_.\-]+", call.name), text
        assert result.finish_reason in (None, "stop", "tool_calls")


def test_long_messages_parse_in_linear_time():
    """Work is measured, not timed: the ids handed to decode() must stay linear in the message length."""

    class CountingTokenizer(ByteTokenizer):
        decoded = 0

        def decode(self, ids):
            CountingTokenizer.decoded += len(ids)
            return super().decode(ids)

    tok = CountingTokenizer()
    ids = tok.encode("<|channel|>final<|message|>" + "word é " * 20000 + "<|return|>")
    result = parse_completion(tok, ids)
    assert len(result.content) == 7 * 20000
    assert CountingTokenizer.decoded < 20 * len(ids)
