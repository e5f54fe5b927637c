"""Shared material for the policy tests: valid identifiers made with their checksums, and a policy file writer."""

from __future__ import annotations

from pathlib import Path

WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


def prc_id(first17: str) -> str:
    """A PRC resident ID with the right MOD 11-2 check character."""
    total = sum(int(c) * w for c, w in zip(first17, WEIGHTS))
    return first17 + "10X98765432"[total % 11]


def luhn(prefix: str) -> str:
    """``prefix`` plus the Luhn check digit."""
    digits = [int(c) for c in prefix]
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return prefix + str((10 - total % 10) % 10)


ID_X = prc_id("11010519491231002")  # ends in X
ID_9 = prc_id("44030419900307124")  # ends in 8
CARD = luhn("622202123456789012")  # 19 digits (UnionPay)
CARD_SPACED = " ".join(CARD[i:i + 4] for i in range(0, 19, 4))
VISA = luhn("411111111111111")
PHONE = "13812345678"
EMAIL = "zhang.san@example-hospital.cn"

HOSPITAL = '''\
# A hospital's policy: no patient identifiers reach the model or leave it; the glossary is enforced.
version = 1

[[rules]]
id = "refuse-id-numbers"
on = "input"
action = "block"
detectors = ["prc_id", "bank_card"]
roles = ["user", "tool"]

[[rules]]
id = "mask-contact-input"
on = "input"
action = "redact"
detectors = ["phone", "email"]
replacement = "[联系方式]"

[[rules]]
id = "mask-pii-output"
on = "output"
action = "redact"
detectors = ["email", "phone", "prc_id", "bank_card", "ipv4", "ipv6"]
channels = ["final", "reasoning", "tool_arguments"]
replacement = "[已隐去]"

[[rules]]
id = "stop-internal-project"
on = "output"
action = "stop"
keywords = ["猎鹰计划", "Project Falcon"]
channels = ["final", "reasoning"]

[[rules]]
id = "ward-codes"
on = "output"
action = "redact"
regex = "WARD-[0-9]{3}"
replacement = "WARD-***"

[[terms]]
preferred = "心肌梗死"
variants = ["心梗", "心脏病发作"]

[[terms]]
preferred = "myocardial infarction"
variants = ["heart attack"]
'''


def write_policy(tmp_path: Path, text: str = HOSPITAL, name: str = "policy.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path
