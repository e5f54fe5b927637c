"""A systemd unit for ``gptoss serve``: restarted on failure, key from an EnvironmentFile, hardened, weights read-only.

:func:`render_unit` turns a :class:`UnitSpec` into the unit text; :func:`install_unit` writes it atomically (mode
0644). The unit runs as an unprivileged user with ``NoNewPrivileges``, ``ProtectSystem=strict`` (the whole file
system read-only but for its own ``StateDirectory``, ``/var/lib/<name>``: ``GPTOSS_HOME`` and ``HF_HOME``),
``ProtectHome=read-only``, ``PrivateTmp`` and DEST under ``ReadOnlyPaths``. Devices stay visible (no
``PrivateDevices``: the GPU is a device) and ``MemoryDenyWriteExecute`` stays off (torch and triton compile code at
run time). The API key is never in the unit: ``GPTOSS_API_KEY=…`` goes in the EnvironmentFile (mode 0600, root).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from gptoss_cli.errors import UsageError

UNIT_DIR = Path("/etc/systemd/system")
DEFAULT_ENV_FILE = Path("/etc/gptoss/gptoss.env")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]*$")
_PLAIN = re.compile(r"^[A-Za-z0-9_./:@=+,-]+$")


@dataclass(frozen=True)
class UnitSpec:
    executable: Path  # the gptoss console script (absolute)
    dest: Path  # DEST: gptoss.lock.json and model/, mounted read-only
    name: str = "gptoss"
    user: str = "gptoss"
    host: str = "127.0.0.1"
    port: int = 8000
    env_file: Path = DEFAULT_ENV_FILE
    serve_args: tuple[str, ...] = ()  # further `gptoss serve` options, e.g. ("--device", "cuda")
    extra_read_only: tuple[Path, ...] = field(default=())


def exec_quote(arg: str) -> str:
    """One ``ExecStart=`` word: ``%`` and ``$`` escaped, quoted when it holds anything but plain characters."""
    if "\n" in arg or "\r" in arg:
        raise UsageError(f"{arg!r}: a newline cannot go into a systemd unit")
    text = arg.replace("%", "%%").replace("$", "$$")
    if _PLAIN.match(text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _path_value(path: Path, what: str) -> str:
    text = str(path)
    if not path.is_absolute():
        raise UsageError(f"{what} {text} must be an absolute path in a systemd unit")
    if any(c.isspace() for c in text) or any(c in text for c in "%$\"'\\"):
        raise UsageError(f"{what} {text!r}: use a path without spaces, quotes, % or $ for a systemd unit")
    return text


def _check(spec: UnitSpec) -> None:
    if not _NAME.match(spec.name):
        raise UsageError(f"--name {spec.name!r}: letters, digits, '-', '_', '.', '@' only")
    if not _NAME.match(spec.user):
        raise UsageError(f"--user {spec.user!r} is not a user name")
    if spec.user == "root":
        raise UsageError("--user root: the server runs as an unprivileged user (create one: useradd --system gptoss)")
    if not 0 < spec.port < 65536:
        raise UsageError(f"--port {spec.port}: not a TCP port")


def render_unit(spec: UnitSpec) -> str:
    """The unit file text for ``spec``."""
    _check(spec)
    dest = _path_value(spec.dest, "DEST")
    exe = _path_value(spec.executable, "the gptoss executable")
    env_file = _path_value(spec.env_file, "--env-file")
    read_only = " ".join([dest, *(_path_value(p, "--read-only") for p in spec.extra_read_only)])
    argv = [exe, "serve", f"{dest}/model", "--host", spec.host, "--port", str(spec.port), *spec.serve_args]
    state = f"/var/lib/{spec.name}"
    return f"""\
# {spec.name}.service: gptoss serve as a hardened systemd service (written by `gptoss service unit`).
# The API key goes in {env_file} (root-owned, mode 0600) as GPTOSS_API_KEY=..., never in this file.
[Unit]
Description=gptoss: OpenAI-compatible gpt-oss server for Dify ({spec.name})
After=network-online.target
Wants=network-online.target

[Service]
Type=exec
User={spec.user}
Group={spec.user}
EnvironmentFile={env_file}
Environment=GPTOSS_HOME={state} HF_HOME={state}/hf HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
Environment=HF_HUB_DISABLE_TELEMETRY=1 PYTHONUNBUFFERED=1
ExecStart={" ".join(exec_quote(a) for a in argv)}
Restart=on-failure
RestartSec=5s
# gptoss serve drains in-flight requests on SIGTERM (serve.drain_timeout, 30 s by default)
TimeoutStopSec=60s
StateDirectory={spec.name}
StateDirectoryMode=0750
UMask=0027
NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=read-only
PrivateTmp=yes
ReadOnlyPaths={read_only}
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
RestrictSUIDSGID=yes
RestrictRealtime=yes
RestrictNamespaces=yes
LockPersonality=yes
RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX
CapabilityBoundingSet=
SystemCallArchitectures=native

[Install]
WantedBy=multi-user.target
"""


def install_unit(text: str, path: Path) -> Path:
    """Write the unit atomically (temp file beside it, then rename), mode 0644."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
    return path


__all__ = ["DEFAULT_ENV_FILE", "UNIT_DIR", "UnitSpec", "exec_quote", "install_unit", "render_unit"]
