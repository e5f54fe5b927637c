"""The policy file: every mistake is one error naming its line; ``gptoss serve --policy`` checks it first (exit 2)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gptoss_cli.cli import app
from gptoss_cli.serve.policy import PolicyError, load_policy, parse_policy
from gptoss_cli.serve.settings import ServeSettings
from tests.policy_fixtures import HOSPITAL, write_policy

RULE = '[[rules]]\nid = "r1"\non = "output"\naction = "redact"\n'


def error(text: str) -> PolicyError:
    with pytest.raises(PolicyError) as info:
        parse_policy(text)
    return info.value


def test_the_hospital_policy_loads():
    policy = parse_policy(HOSPITAL)
    assert [r.id for r in policy.rules] == ["refuse-id-numbers", "mask-contact-input", "mask-pii-output",
                                           "stop-internal-project", "ward-codes", "term:心肌梗死",
                                           "term:myocardial_infarction"]
    assert policy.describe() == "2 input rules, 3 output rules, 2 terms"
    assert [r.id for r in policy.input_rules("system")] == ["mask-contact-input"]
    assert [r.id for r in policy.output_rules("tool_arguments")] == ["mask-pii-output"]


@pytest.mark.parametrize("text,line,words", [
    ("[[rules]\nid = 1\n", 1, "not valid TOML"),
    (RULE + 'detectors = ["email", "phon"]\n', 5, "unknown detector 'phon'"),
    ('[[rules]]\non = "input"\n', 1, "every rule needs an id"),
    (RULE + 'keywords = ["a"]\n\n' + RULE.replace('"redact"', '"stop"') + 'keywords = ["b"]\n', 7,
     "rule id 'r1' is used twice (first on line 1)"),
    (RULE + 'regex = "WARD-[0-9]+"\n', 5, "set max_length"),
    (RULE + 'regex = "WARD-[0-9"\n', 5, "regex does not compile"),
    (RULE + 'regex = "x*"\nmax_length = 4\n', 5, "matches the empty string"),
    (RULE + 'keywords = ["a"]\nchanels = ["final"]\n', 6, "unknown key 'chanels'"),
    ('[[rules]]\nid = "r1"\non = "input"\naction = "stop"\nkeywords = ["a"]\n', 4, "block or redact"),
    ('[[rules]]\nid = "r1"\non = "input"\naction = "block"\nkeywords = ["a"]\nreplacement = "x"\n', 6,
     "replacement is for redact rules"),
    (RULE + 'keywords = ["a"]\nroles = ["user"]\n', 6, "roles is for input rules"),
    (RULE + 'keywords = ["a"]\nchannels = ["answer"]\n', 6, "final, reasoning, tool_arguments"),
    (RULE, 1, "say what it matches"),
    ('\n[[terms]]\npreferred = "A"\nvariants = ["A"]\n', 4, "variants must list the forbidden forms"),
    ('version = 2\n', 1, "version must be 1"),
    ('colour = "red"\n', 1, "unknown key 'colour' in the policy file"),
])
def test_mistakes_name_their_line(text, line, words):
    exc = error(text)
    assert exc.line == line and words in exc.message, str(exc)
    assert str(exc).startswith(f"line {line}: ")


def test_an_unreadable_file_says_so(tmp_path):
    with pytest.raises(PolicyError, match="cannot read"):
        load_policy(tmp_path / "missing.toml")


def test_a_bounded_regex_needs_no_max_length_and_a_max_length_caps_an_unbounded_one():
    policy = parse_policy(RULE + 'regex = "(?i)secret-[a-z0-9]+"\nmax_length = 20\n')
    assert policy.rules[0].matchers[0].max_length == 20


def test_settings_refuse_a_bad_policy_file(tmp_path):
    bad = write_policy(tmp_path, RULE + 'detectors = ["fax"]\n')
    with pytest.raises(Exception, match=r"--policy is not a usable policy file \(line 5: rule 'r1': unknown detector"):
        ServeSettings(policy=str(bad))


def test_serve_checks_the_policy_file_first_exit_2(tmp_path):
    bad = write_policy(tmp_path, RULE + 'detectors = ["fax"]\n')
    r = CliRunner().invoke(app, ["serve", "--demo", "--policy", str(bad)], catch_exceptions=False)
    assert r.exit_code == 2, r.stderr
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert "line 5" in lines[0] and "unknown detector 'fax'" in lines[0] and "--policy" in lines[0]
    r = CliRunner().invoke(app, ["serve", "--demo", "--policy", str(tmp_path / "none.toml")], catch_exceptions=False)
    assert r.exit_code == 2 and "cannot read" in r.stderr


ROOT = Path(__file__).resolve().parent.parent


def _toml_after(path: Path, heading: str) -> str:
    text = path.read_text(encoding="utf-8")
    section = text[text.index(heading):]
    return re.search(r"```toml\n(.*?)```", section, re.S).group(1)


@pytest.mark.parametrize("doc,heading,answer,shown", [
    ("README.md", "## Policy:", "已记录：zhang@example.cn，诊断为心梗（heart attack），病房WARD-042。",
     "已记录：[已隐去]，诊断为心肌梗死（myocardial infarction），病房WARD-***。"),
    ("docs/deploy-with-dify.zh-CN.md", "## 11.", "已记录：zhang@example.cn，诊断为心梗。", "已记录：[已隐去]，诊断为心肌梗死。"),
    ("docs/deploy-with-dify.md", "## 11.", "已记录：zhang@example.cn，诊断为心梗。", "已记录：[已隐去]，诊断为心肌梗死。"),
])
def test_the_documented_hospital_policy_does_what_the_docs_say(doc, heading, answer, shown):
    from gptoss_cli.serve.policy import PolicyViolation, apply_input
    from gptoss_cli.serve.policy.redact import rewrite

    policy = parse_policy(_toml_after(ROOT / doc, heading))
    assert rewrite(policy.output_rules("final"), answer, lambda rule: None) == (shown, False)
    with pytest.raises(PolicyViolation) as info:
        apply_input(policy, {"messages": [{"role": "user", "content": "患者身份证 11010519491231002X 的病历"}]}, "chat",
                    lambda rule: None)
    assert info.value.rule_id == "refuse-id-numbers"
