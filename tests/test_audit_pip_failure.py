"""`audit --resolve`: when pip fails, the reason is pip's own error line, never pip's command line or credentials."""

from __future__ import annotations

from gptoss_cli.audit.runner import failure_reason

# what pip-audit 2.x writes to stderr when pip cannot resolve a requirement (captured, index URL made secret)
INSTALL_FAILURE = """\
ERROR:pip_audit._virtual_env:internal pip failure: WARNING: Retrying (Retry(total=0)) after connection broken \
by 'NewConnectionError' : /simple/nonexistent-pkg/ on https://ci:IdxSecret77@pypi.internal/simple
ERROR: Could not find a version that satisfies the requirement nonexistent-pkg>=1 (from versions: none)
ERROR: No matching distribution found for nonexistent-pkg>=1

ERROR:pip_audit._cli:Failed to install packages: ['/tmp/tmpljwo1d3a/bin/python3.11', '-m', 'pip', 'install', \
'--no-input', '--keyring-provider=subprocess', '--dry-run', '--report', '/tmp/tmpw6l15jk7/r', '-r', '/tmp/req.txt']
"""
UPGRADE_FAILURE = """\
ERROR:pip_audit._cli:Failed to upgrade `pip`: ['/tmp/tmpdoqubafg/bin/python3.11', '-m', 'pip', 'install', \
'--upgrade', 'pip', 'wheel', 'setuptools']
"""


def test_pip_own_error_replaces_the_command_line() -> None:
    reason = failure_reason(INSTALL_FAILURE, 1)
    assert reason == "pip failed: No matching distribution found for nonexistent-pkg>=1"


def test_a_pip_failure_without_pip_output_names_the_step_not_the_command() -> None:
    reason = failure_reason(UPGRADE_FAILURE, 1)
    assert "bin/python" not in reason and "['" not in reason
    assert "upgrade pip" in reason and "package index" in reason


def test_pip_lines_lose_url_credentials() -> None:
    text = "ERROR:pip_audit._virtual_env:internal pip failure: x\nERROR: Could not fetch https://ci:IdxSecret77@h/s\n"
    assert "IdxSecret77" not in failure_reason(text, 1)
