"""``gptoss audit``: pip-audit over the fetched code's requirements and this environment, online or air-gapped,
with three honest outcomes — clean (0), vulnerable (1), incomplete (3, never reported as clean).

pip-audit runs as a subprocess (its Python API is private); ``--osv-db`` serves a local OSV export to it through a
loopback OSV-compatible endpoint started in this process.
"""

from gptoss_cli.audit.core import AuditRequest, run_audit
from gptoss_cli.audit.formats import FORMATS, render, write_atomic
from gptoss_cli.audit.model import (
    FAIL_ON_CHOICES,
    OUTCOME_CLEAN,
    OUTCOME_INCOMPLETE,
    OUTCOME_VULNERABLE,
    SCHEMA,
    SERVICE_CHOICES,
    AuditReport,
    CheckedPackage,
    Skipped,
    TargetResult,
    Unchecked,
    Vuln,
)

__all__ = [
    "FAIL_ON_CHOICES",
    "FORMATS",
    "OUTCOME_CLEAN",
    "OUTCOME_INCOMPLETE",
    "OUTCOME_VULNERABLE",
    "SCHEMA",
    "SERVICE_CHOICES",
    "AuditReport",
    "AuditRequest",
    "CheckedPackage",
    "Skipped",
    "TargetResult",
    "Unchecked",
    "Vuln",
    "render",
    "run_audit",
    "write_atomic",
]
