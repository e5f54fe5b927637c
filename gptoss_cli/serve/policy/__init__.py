"""The request policy (``--policy FILE``): input rules (block, redact), output rules (redact, stop) on the answer,
the reasoning and tool arguments, built-in offline detectors, keyword lists, regexes and a glossary, applied to every
engine at the HTTP front (``openai/policy_front.py``). Pure: the standard library and ``serve/errors.py`` only.

    load.py       the TOML file → a frozen ``Policy`` (``PolicyError`` with the line)
    model.py      Policy, Rule, Term              detectors.py   the built-in detectors
    matchers.py   regex / keyword matchers and how much of a stream's tail each must hold back
    redact.py     StreamRedactor: streaming-safe rewriting of one text channel
    inputs.py     input rules on a request body   outputs.py     output rules on replies and stream chunks
    holder.py     the policy in force (and each API key's own), reloaded whole on SIGHUP
"""

from __future__ import annotations

from gptoss_cli.serve.policy.holder import KeyPolicies, PolicyHolder, Reload
from gptoss_cli.serve.policy.inputs import PolicyViolation, apply_input
from gptoss_cli.serve.policy.load import PolicyError, load_policy, parse_policy
from gptoss_cli.serve.policy.model import Policy, Rule, Term
from gptoss_cli.serve.policy.outputs import CONTENT_FILTER, OutputFilter

__all__ = ["CONTENT_FILTER", "KeyPolicies", "OutputFilter", "Policy", "PolicyError", "PolicyHolder", "PolicyViolation", "Reload",
           "Rule", "Term", "apply_input", "load_policy", "parse_policy"]
