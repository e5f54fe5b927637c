"""The built-in detectors and matchers: what they find, what they must not, CJK neighbours, and the hold-back."""

from __future__ import annotations

import pytest

from gptoss_cli.serve.policy.detectors import DETECTORS, luhn_ok, prc_id_ok
from gptoss_cli.serve.policy.matchers import KeywordMatcher, RegexMatcher, pattern_shape
from tests.policy_fixtures import CARD, CARD_SPACED, EMAIL, ID_9, ID_X, PHONE, VISA


def found(name: str, text: str) -> list[str]:
    d = DETECTORS[name]
    m = RegexMatcher(d.pattern, max_length=d.max_length, validate=d.validate)
    out, pos = [], 0
    while (hit := m.find(text, pos)) is not None:
        out.append(text[hit[0]:hit[1]])
        pos = hit[1]
    return out


@pytest.mark.parametrize("name,text,expected", [
    ("email", f"写信到{EMAIL}谢谢", [EMAIL]),
    ("email", "a.b+tag@mail.example.co.uk, then", ["a.b+tag@mail.example.co.uk"]),
    ("email", "not an address: foo@bar, x@y.", []),
    ("phone", f"手机{PHONE}，或+86 138 1234 5678。", [PHONE, "+86 138 1234 5678"]),
    ("phone", "E.164: +442071838750 and +1 415 555 2671", ["+442071838750", "+1 415 555 2671"]),
    ("phone", "订单号 2381234567890 不是手机", []),  # 13 digits: no mobile inside a longer number
    ("phone", "12812345678", []),  # second digit 2: not a CN mobile
    ("prc_id", f"身份证{ID_X}，另一个{ID_9}。", [ID_X, ID_9]),
    ("prc_id", "身份证110105194912310021", []),  # wrong check character
    ("prc_id", "110105194913310020", []),  # month 13
    ("bank_card", f"卡号{CARD}，或 {CARD_SPACED}；Visa {VISA}", [CARD, CARD_SPACED, VISA]),
    ("bank_card", "4111111111111112 fails Luhn", []),
    ("ipv4", "服务器192.168.1.10上，网关 10.0.0.1.", ["192.168.1.10", "10.0.0.1"]),
    ("ipv4", "version 1.2.3.4.5 and 256.1.1.1 and 1.2.3", []),
    ("ipv6", "地址fe80::1ff:fe23:4567:890a，和 2001:db8::1。", ["fe80::1ff:fe23:4567:890a", "2001:db8::1"]),
    ("ipv6", "std::vector, 12:30:45, a::b::c, ::", []),
])
def test_detectors(name, text, expected):
    assert found(name, text) == expected


def test_checksums():
    assert prc_id_ok(ID_X) and prc_id_ok(ID_X.lower()) and prc_id_ok(ID_9)
    assert not prc_id_ok(ID_9[:-1] + "7")
    assert luhn_ok(CARD) and luhn_ok(CARD_SPACED) and not luhn_ok(CARD[:-1] + "0")
    assert not luhn_ok("123456789012")  # too short for a card


def test_the_alphabet_and_bounds_are_read_from_the_pattern():
    assert pattern_shape(r"WARD-[0-9]{3}") == (8, 0, "\\U00000057\\U00000041\\U00000052\\U00000044\\U0000002d"
                                                     "\\U00000030-\\U00000039")
    assert pattern_shape(r"x(?!\d\d)")[:2] == (1, 2)
    assert pattern_shape(r"a.b")[2] is None and pattern_shape(r"[^a]")[2] is None
    assert pattern_shape(r"a+")[0] > 10**6


def test_a_regex_holds_only_the_tail_it_could_still_match():
    d = DETECTORS["email"]
    m = RegexMatcher(d.pattern, max_length=d.max_length, validate=d.validate)
    assert m.hold("写信给 alice@exa") == len("alice@exa")
    assert m.hold("写信给 alice@example.com，") == 0
    assert m.hold("x" * 1000) == d.max_length  # never more than the longest match
    phone = DETECTORS["phone"]
    pm = RegexMatcher(phone.pattern, max_length=phone.max_length)
    assert pm.hold("电话 138") == 4  # digits and the space before them (a separator is in its alphabet)
    assert pm.hold("电话是") == 0
    unknown = RegexMatcher(r"S.{3}X")
    assert unknown.hold("abcdefgh") == 5  # any character may be part of it: the whole bound


def test_keywords_are_substrings_so_cjk_works_and_whole_word_is_ascii_only():
    kw = KeywordMatcher(["猎鹰计划", "cat"], whole_word=True)
    text = "关于猎鹰计划的cat，concatenate 和 猫cat猫"
    hits = []
    pos = 0
    while (hit := kw.find(text, pos)) is not None:
        hits.append(text[hit[0]:hit[1]])
        pos = hit[1]
    assert hits == ["猎鹰计划", "cat", "cat"]  # not inside "concatenate"; CJK neighbours are no word characters
    assert kw.hold("关于猎鹰") == 2 and kw.hold("关于") == 0 and kw.hold("the ca") == 2


def test_keywords_ignore_case_by_default_and_prefer_the_longest():
    kw = KeywordMatcher(["Falcon", "Project Falcon"])
    assert kw.find("the PROJECT FALCON files", 0) == (4, 18, None)
    strict = KeywordMatcher(["Falcon"], ignore_case=False)
    assert strict.find("falcon", 0) is None
