"""Streaming safety of the redactor itself: whatever the split, no redacted or stopping text ever leaves it, and the
result is the same as rewriting the whole text at once. Adversarial splits: every single boundary, every pair of
boundaries around each secret, one character at a time, and seeded random pieces."""

from __future__ import annotations

import random

import pytest

from gptoss_cli.serve.policy import parse_policy
from gptoss_cli.serve.policy.redact import StreamRedactor, rewrite
from tests.policy_fixtures import CARD, CARD_SPACED, EMAIL, HOSPITAL, ID_9, ID_X, PHONE

POLICY = parse_policy(HOSPITAL)
RULES = POLICY.output_rules("final")
SECRETS = [EMAIL, PHONE, ID_X, ID_9, CARD, CARD_SPACED, "192.168.10.20", "fe80::1ff:fe23:4567:890a", "WARD-042",
           "心梗", "心脏病发作", "heart attack"]
TEXT = (f"患者张三，电话{PHONE}，邮箱{EMAIL}；身份证{ID_X}（家属 {ID_9}）。卡号{CARD}或{CARD_SPACED}。"
        f"病房WARD-042，服务器192.168.10.20与fe80::1ff:fe23:4567:890a。诊断：心梗（即心脏病发作，"
        f"a Heart Attack），已按心肌梗死处理。")


def stream(pieces: list[str], rules=RULES) -> list[str]:
    r = StreamRedactor(rules, lambda rule: None)
    out = [r.feed(p) for p in pieces]
    out.append(r.flush())
    return out


def whole(text: str = TEXT) -> str:
    return rewrite(RULES, text, lambda rule: None)[0]


def check(pieces: list[str]) -> None:
    out = stream(pieces)
    joined = "".join(out)
    assert joined == whole("".join(pieces))
    for secret in SECRETS:
        assert secret.lower() not in joined.lower()
        assert not any(secret in piece for piece in out)


def test_the_whole_text_is_rewritten_as_expected():
    out = whole()
    assert out == ("患者张三，电话[已隐去]，邮箱[已隐去]；身份证[已隐去]（家属 [已隐去]）。卡号[已隐去]或[已隐去]。"
                   "病房WARD-***，服务器[已隐去]与[已隐去]。诊断：心肌梗死（即心肌梗死，a myocardial infarction），"
                   "已按心肌梗死处理。")


def test_every_single_boundary():
    for i in range(len(TEXT) + 1):
        check([TEXT[:i], TEXT[i:]])


def test_every_pair_of_boundaries_around_each_secret():
    for secret in SECRETS:
        start = TEXT.find(secret)
        if start < 0:
            start = TEXT.lower().find(secret.lower())
        lo, hi = max(0, start - 2), min(len(TEXT), start + len(secret) + 2)
        for i in range(lo, hi + 1):
            for j in range(i, hi + 1):
                check([TEXT[:i], TEXT[i:j], TEXT[j:]])


def test_one_character_at_a_time():
    check(list(TEXT))


@pytest.mark.parametrize("seed", range(40))
def test_random_pieces(seed):
    rng = random.Random(seed)
    pieces, i = [], 0
    while i < len(TEXT):
        n = rng.randint(1, 9)
        pieces.append(TEXT[i:i + n])
        i += n
    check(pieces)


def test_a_stop_rule_ends_the_channel_and_nothing_after_it_leaves():
    rules = POLICY.output_rules("reasoning")
    text = "先说明背景。然后是猎鹰计划的细节：13812345678，以及更多。"
    for i in range(len(text) + 1):
        r = StreamRedactor(rules, lambda rule: None)
        out = r.feed(text[:i]) + r.feed(text[i:]) + r.flush()
        assert out == "先说明背景。然后是" and r.stopped and r.stop_rule.id == "stop-internal-project"


def test_text_that_cannot_start_a_match_is_not_held():
    r = StreamRedactor(RULES, lambda rule: None)
    assert r.feed("The answer is yes!") == "The answer is yes!"
    assert r.feed(" It is") == " It "  # the last word may still be the start of an e-mail address
    assert r.feed("。请于周一复诊。") == "is。请于周一复诊。"
    assert r.feed("call 138") == "call"  # " 138" could still become a phone number (a space is in its alphabet)
    assert r.feed("12345678 now") == " [已隐去] "  # "now" may still begin an e-mail address
    assert r.feed("!") == "now!"


def test_the_preferred_term_is_never_rewritten_even_when_a_variant_is_inside_it():
    policy = parse_policy('[[terms]]\npreferred = "heart attack (myocardial infarction)"\nvariants = ["heart attack"]\n')
    rules = policy.output_rules("final")
    hits = []
    text = "A heart attack (myocardial infarction) is a heart attack."
    assert rewrite(rules, text, hits.append)[0] == ("A heart attack (myocardial infarction) is a heart attack "
                                                    "(myocardial infarction).")
    assert len(hits) == 1


def test_hits_name_the_rule_and_identical_replacements_are_no_hits():
    hits = []
    rewrite(RULES, f"邮箱 {EMAIL}，心肌梗死", lambda rule: hits.append(rule.id))
    assert hits == ["mask-pii-output"]
