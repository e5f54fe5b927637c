"""A real OpenSSH server on 127.0.0.1 (Debian's ``openssh-server``) serving bare repos from tmp, for fetch over SSH.

The server runs as the current user with a config file in tmp: a throwaway host key, one authorised client key,
``UsePAM no`` and ``StrictModes no`` (nothing root-only), ``-D -e`` on a free port. The client side is an
``ssh -F CONFIG`` command (for ``GIT_SSH_COMMAND``) whose known_hosts file in tmp holds the server's host key, with
a ``Host`` alias for the scp-like URL form. Without ``sshd`` (or when it cannot start) the tests are skipped with
the reason; CI installs ``openssh-server`` (``.ci/run``).
"""

from __future__ import annotations

import getpass
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest
from tests.ports import free_port

ALIAS = "gptoss-test-sshd"


@dataclass(frozen=True)
class SshServer:
    port: int
    user: str
    root: Path
    client_key: Path  # authorised
    other_key: Path  # not authorised
    locked_key: Path  # authorised, but has a passphrase
    known_hosts: Path  # holds the server's host key
    config: Path  # ssh -F: Host alias, known_hosts; no identity
    config_with_key: Path  # the same plus IdentityFile client_key
    empty_known_hosts: Path

    def url(self, repo: Path) -> str:
        return f"ssh://{self.user}@127.0.0.1:{self.port}{repo}"

    def scp_url(self, repo: Path) -> str:
        return f"{ALIAS}:{repo}"

    def command(self, config: Path | None = None) -> str:
        """A ``GIT_SSH_COMMAND`` that uses our config file (and so our known_hosts) instead of ~/.ssh."""
        return f"ssh -F {config or self.config}"


def _keygen(path: Path, passphrase: str = "") -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", passphrase, "-C", path.name, "-f", str(path)],
                   check=True, capture_output=True, timeout=30)
    return path


def _client_config(path: Path, port: int, user: str, known_hosts: Path, identity: Path | None = None) -> Path:
    lines = [f"Host {ALIAS}", "  HostName 127.0.0.1", f"  Port {port}", f"  User {user}", "Host *",
             f"  UserKnownHostsFile {known_hosts}", "  GlobalKnownHostsFile /dev/null", "  IdentityAgent none",
             "  PasswordAuthentication no", "  KbdInteractiveAuthentication no", "  ConnectTimeout 10"]
    if identity is not None:
        lines.append(f"  IdentityFile {identity}")
    path.write_text("\n".join(lines) + "\n")
    return path


def _banner(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            return s.recv(16).startswith(b"SSH-")
    except OSError:
        return False


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshServer]:
    binary = shutil.which("sshd") or next((p for p in ("/usr/sbin/sshd",) if Path(p).is_file()), None)
    if binary is None or shutil.which("ssh") is None or shutil.which("ssh-keygen") is None:
        pytest.skip("sshd/ssh not installed (apt-get install openssh-server); git over SSH not tested")
    root = tmp_path_factory.mktemp("sshd")
    host_key = _keygen(root / "host_key")
    keys = [_keygen(root / "client_key"), _keygen(root / "other_key"), _keygen(root / "locked_key", "s3cret-pass")]
    (root / "authorized_keys").write_text((root / "client_key.pub").read_text()
                                          + (root / "locked_key.pub").read_text())
    port, user = free_port(), getpass.getuser()
    (root / "sshd_config").write_text("\n".join([
        f"Port {port}", "ListenAddress 127.0.0.1", f"HostKey {host_key}", f"AuthorizedKeysFile {root}/authorized_keys",
        "UsePAM no", "StrictModes no", "PasswordAuthentication no", "KbdInteractiveAuthentication no",
        "PubkeyAuthentication yes", "PermitRootLogin prohibit-password", "AcceptEnv GIT_PROTOCOL", "PidFile none",
        "LogLevel VERBOSE", "MaxStartups 50"]) + "\n")
    known = root / "known_hosts"
    known.write_text(f"[127.0.0.1]:{port} {' '.join((root / 'host_key.pub').read_text().split()[:2])}\n")
    empty = root / "empty_known_hosts"
    empty.write_text("")
    log = (root / "sshd.log").open("wb")
    proc = subprocess.Popen([binary, "-D", "-e", "-f", str(root / "sshd_config")], stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 10
        while not _banner(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                reason = (root / "sshd.log").read_text(errors="replace").strip().splitlines()[-1:] or ["no output"]
                pytest.skip(f"sshd could not start on 127.0.0.1: {reason[0]}")
            time.sleep(0.05)
        yield SshServer(port, user, root, keys[0], keys[1], keys[2], known,
                        _client_config(root / "ssh_config", port, user, known),
                        _client_config(root / "ssh_config_key", port, user, known, keys[0]), empty)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        log.close()


__all__ = ["ALIAS", "SshServer", "sshd"]
