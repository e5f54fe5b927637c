"""The built-in detectors: offline patterns with checksums where the format has one.

Each is a regular expression over ASCII digits and letters only (never ``\\b`` or ``\\w``, which count CJK
characters as word characters: ``手机13812345678`` must still be found), a bound on the length of a match (what a
stream holds back at most) and an optional validator that the matched text must pass.

    email       local@domain.tld, at most 254 characters (RFC 5321)
    phone       CN mobile (1[3-9]x xxxx xxxx, optional +86) and E.164 (+ country code, 7 to 15 digits)
    prc_id      PRC resident ID: 18 characters, birth date plausible, ISO 7064 MOD 11-2 check character
    bank_card   13 to 19 digits, plain or in groups of 4 (4-6-5 too) separated by a space or hyphen, Luhn-valid
    ipv4        dotted quad, each part 0-255 (not part of a longer dotted number such as a version string)
    ipv6        full or ``::``-compressed hex groups (no embedded IPv4), checked by ``ipaddress``
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Callable

_NOT_DIGIT_BEFORE = r"(?<![0-9])"
_NOT_DIGIT_AFTER = r"(?![0-9])"
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"


@dataclass(frozen=True)
class Detector:
    name: str
    pattern: str
    max_length: int
    validate: Callable[[str], bool] | None = None
    description: str = ""


def luhn_ok(text: str) -> bool:
    digits = [int(c) for c in text if c.isdigit()]
    if not 13 <= len(digits) <= 19:
        return False
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"


def prc_id_ok(text: str) -> bool:
    """ISO 7064 MOD 11-2 over the first 17 digits gives the 18th character (``X`` for 10)."""
    if len(text) != 18 or not text[:17].isdigit():
        return False
    total = sum(int(c) * w for c, w in zip(text[:17], _ID_WEIGHTS))
    return _ID_CHECK[total % 11] == text[17].upper()


def email_ok(text: str) -> bool:
    local, _, domain = text.rpartition("@")
    return len(text) <= 254 and 0 < len(local) <= 64 and ".." not in text and not domain.startswith("-")


def ipv6_ok(text: str) -> bool:
    if text.count(":") < 2 or text.strip(":") == "":
        return False
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


DETECTORS: dict[str, Detector] = {d.name: d for d in (
    Detector("email", r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]{1,64}@(?:[A-Za-z0-9-]{1,63}\.){1,8}[A-Za-z]{2,63}",
             254, email_ok, "e-mail address"),
    Detector("phone", _NOT_DIGIT_BEFORE + r"(?:(?:\+86[ -]?)?1[3-9][0-9](?:[ -]?[0-9]{4}){2}"
             r"|\+[1-9](?:[ -]?[0-9]){6,14})" + _NOT_DIGIT_AFTER, 32, None, "CN mobile or E.164 phone number"),
    Detector("prc_id", _NOT_DIGIT_BEFORE + r"[1-9][0-9]{5}(?:18|19|20)[0-9]{2}(?:0[1-9]|1[0-2])"
             r"(?:0[1-9]|[12][0-9]|3[01])[0-9]{3}[0-9Xx]" + r"(?![0-9A-Za-z])", 18, prc_id_ok,
             "PRC resident identity card number"),
    Detector("bank_card", _NOT_DIGIT_BEFORE + r"(?:[0-9]{13,19}|[0-9]{4}(?:[ -][0-9]{4}){2}(?:[ -][0-9]{1,4}){1,2}"
             r"|[0-9]{4}[ -][0-9]{6}[ -][0-9]{5})" + _NOT_DIGIT_AFTER, 24, luhn_ok, "bank card number (Luhn)"),
    Detector("ipv4", r"(?<![0-9.])" + rf"(?:{_OCTET}\.){{3}}{_OCTET}" + r"(?!\.?[0-9])", 15, None, "IPv4 address"),
    Detector("ipv6", r"(?<![A-Za-z0-9_:.])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![A-Za-z0-9_:])", 39, ipv6_ok,
             "IPv6 address"),
)}

__all__ = ["DETECTORS", "Detector", "email_ok", "ipv6_ok", "luhn_ok", "prc_id_ok"]
