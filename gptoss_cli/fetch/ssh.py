"""Git over SSH: which URLs are SSH, the ``GIT_SSH_COMMAND`` gptoss hands to git, and one-line SSH errors.

* SSH URLs are ``ssh://[user@]host[:port]/path`` (also ``git+ssh://``, ``ssh+git://``) and git's scp-like form
  ``[user@]host:path`` (a colon before any slash, as git itself decides).
* The ssh command is the user's own (``GIT_SSH_COMMAND``, else ``GIT_SSH``, else ``core.sshCommand``, in git's
  order; else ``ssh``) with ``-o BatchMode=yes`` appended (ssh never asks for a password, a passphrase or whether
  to trust a new host key), and with ``--ssh-key FILE`` also ``-i FILE -o IdentitiesOnly=yes``.
  ``StrictHostKeyChecking`` is never touched: an unknown host key fails, with a line saying how to add it.
* Git's stderr after an SSH failure ends in the useless "Could not read from remote repository"; the line that
  names the cause (host key, permission denied, no such repository, DNS, connection) is turned into one message
  with what to do.
"""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path
from typing import Iterable, Optional
from urllib.parse import urlsplit

from gptoss_cli.errors import GitError, UsageError
from gptoss_cli.redact import public_git_url

SSH_SCHEMES = ("ssh", "git+ssh", "ssh+git")
_PLINK = ("plink", "plink.exe", "tortoiseplink", "tortoiseplink.exe", "putty", "putty.exe")
_DOS_DRIVE = re.compile(r"^[A-Za-z]:[\\/]")


def is_ssh_url(url: str) -> bool:
    """Whether git would reach ``url`` over SSH (same rule as git's ``parse_connect_url``)."""
    if "://" in url:
        return url.split("://", 1)[0].lower() in SSH_SCHEMES
    colon, slash = url.find(":"), url.find("/")
    if colon <= 0 or (0 <= slash < colon) or _DOS_DRIVE.match(url):
        return False
    return True


def ssh_host(url: str) -> str:
    """``[user@]host[:port]`` of an SSH URL, for messages (never a password)."""
    if "://" in url:
        try:
            parts = urlsplit(url)
        except ValueError:
            return "?"
        user = f"{parts.username}@" if parts.username else ""
        port = f":{parts.port}" if parts.port else ""
        return f"{user}{parts.hostname or '?'}{port}"
    return url.split(":", 1)[0]


def check_url(url: str) -> None:
    """An SSH URL with a password is refused: ssh takes none from a URL, and with BatchMode it never asks."""
    if "://" not in url:
        return
    try:
        password = urlsplit(url).password
    except ValueError:
        return
    if password:
        raise UsageError(f"--repo-url {public_git_url(url)}: an SSH URL cannot carry a password",
                         hint="ssh takes none from the URL and gptoss never lets it ask; use a key: --ssh-key FILE "
                              "or ssh-agent")


def check_key(key: Optional[Path]) -> Optional[Path]:
    """``--ssh-key FILE`` must be a readable file (ssh would only warn and go on without it)."""
    if key is None:
        return None
    key = Path(key)
    if not key.is_file() or not os.access(key, os.R_OK):
        raise UsageError(f"--ssh-key {key}: no such readable file", hint="pass the private key file, e.g. "
                                                                          "~/.ssh/id_ed25519")
    return key


def ssh_command(base: Optional[str], key: Optional[Path] = None) -> str:
    """The ``GIT_SSH_COMMAND`` for git: ``base`` (a shell command, default ``ssh``) + BatchMode [+ the key]."""
    base = (base or "").strip() or "ssh"
    try:
        program = shlex.split(base)[0]
    except (ValueError, IndexError):
        raise UsageError(f"cannot parse the ssh command {base!r}", hint="check GIT_SSH_COMMAND") from None
    if os.path.basename(program).lower() in _PLINK:
        raise UsageError(f"the ssh command is {os.path.basename(program)}: gptoss passes OpenSSH options "
                         "(-o BatchMode=yes, -i)", hint="use OpenSSH's ssh in GIT_SSH_COMMAND for gptoss fetch")
    parts = [base, "-o", "BatchMode=yes"]
    if key is not None:
        parts += ["-i", shlex.quote(str(Path(key).absolute())), "-o", "IdentitiesOnly=yes"]
    return " ".join(parts)


def user_ssh_command(git_ssh_command: Optional[str], git_ssh: Optional[str], configured: Optional[str]) -> str:
    """The ssh command git would run on its own: GIT_SSH_COMMAND > GIT_SSH (a program) > core.sshCommand > ssh."""
    if git_ssh_command:
        return git_ssh_command
    if git_ssh:
        return shlex.quote(git_ssh)
    return configured or "ssh"


def _keyscan(url: str) -> str:
    if "://" in url:
        try:
            parts = urlsplit(url)
            port = f"-p {parts.port} " if parts.port else ""
            return f"ssh-keyscan {port}{parts.hostname}"
        except ValueError:
            pass
    return f"ssh-keyscan {url.split(':', 1)[0].rpartition('@')[2]}"


def _pick(lines: list[str], *needles: str) -> Optional[str]:
    return next((ln for ln in lines if any(n in ln for n in needles)), None)


def ssh_failure(lines: Iterable[str], action: str, url: str, key: Optional[Path] = None) -> Optional[GitError]:
    """The one-line error for an SSH failure seen in git's stderr ``lines``, or None when it is not one."""
    lines = [ln.strip() for ln in lines if ln and ln.strip()]
    host, shown = ssh_host(url), public_git_url(url)
    head = f"git {action} of {shown} failed"
    if _pick(lines, "REMOTE HOST IDENTIFICATION HAS CHANGED"):
        return GitError(f"{head}: the SSH host key of {host} has changed",
                        hint="if the server's key really changed, remove the old one (ssh-keygen -R HOST) and "
                             "add the new one after checking its fingerprint")
    if _pick(lines, "Host key verification failed", "No ED25519 host key is known", "host key is known for"):
        return GitError(f"{head}: the SSH host key of {host} is not known",
                        hint=f"check its fingerprint, then add it to ~/.ssh/known_hosts: {_keyscan(url)} >> "
                             "~/.ssh/known_hosts, or ssh to the host once; gptoss never turns off host key checking")
    if _pick(lines, "Load key", "incorrect passphrase", "UNPROTECTED PRIVATE KEY FILE"):
        what = _pick(lines, "Load key", "incorrect passphrase", "UNPROTECTED PRIVATE KEY FILE") or ""
        return GitError(f"{head}: ssh could not use the key: {what.rstrip('.')}",
                        hint="ssh runs with BatchMode=yes and never asks for a passphrase: load the key into "
                             "ssh-agent or use a key without one (chmod 600 it)")
    if _pick(lines, "Permission denied (", "Permission denied, please try again"):
        used = f"the key {key}" if key is not None else "your ssh keys"
        return GitError(f"{head}: permission denied for {host} with {used}",
                        hint="pass --ssh-key FILE with a key the server accepts and check the user name in "
                             "--repo-url; ssh never asks for a passphrase here, so load such a key into ssh-agent")
    cannot_run = _pick(lines, "cannot run ")
    if cannot_run:
        return GitError(f"{head}: {cannot_run.removeprefix('error: ').rstrip('.')}",
                        hint="install OpenSSH's client (ssh) or fix GIT_SSH_COMMAND")
    missing = _pick(lines, "does not appear to be a git repository", "Repository not found",
                    "repository not found", "No such file or directory", "not found")
    if missing:
        return GitError(f"{head}: no git repository there ({missing.removeprefix('fatal: ').rstrip('.')})",
                        hint="check the path in --repo-url and that your key may read it")
    dns = _pick(lines, "Could not resolve hostname")
    if dns:
        return GitError(f"{head}: {dns.removeprefix('ssh: ').rstrip('.')}",
                        hint="check the host in --repo-url, or the Host alias in your ssh config")
    conn = _pick(lines, "connect to host", "Connection closed by", "Connection reset", "Connection timed out")
    if conn:
        return GitError(f"{head}: {conn.removeprefix('ssh: ').rstrip('.')}",
                        hint="check the host and port in --repo-url and that the SSH server is reachable")
    return None


__all__ = ["SSH_SCHEMES", "check_key", "check_url", "is_ssh_url", "ssh_command", "ssh_failure", "ssh_host", "user_ssh_command"]
