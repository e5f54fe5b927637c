"""Shared test isolation: tmp state dirs for every test, and no network beyond loopback."""

from __future__ import annotations

import atexit
import ipaddress
import os
import shutil
import socket
import sys
import tempfile

import pytest

# Libraries that read their cache location once, at import (huggingface_hub's HF_HUB_CACHE), must already see a
# temporary one when the test modules import them: the per-test fixture below comes too late for that.
_SESSION_HOME = tempfile.mkdtemp(prefix="gptoss-tests-")
atexit.register(shutil.rmtree, _SESSION_HOME, ignore_errors=True)
for _name, _sub in (("GPTOSS_HOME", "gptoss-home"), ("HF_HOME", "hf-home"), ("XDG_CONFIG_HOME", "xdg-config"),
                    ("XDG_CACHE_HOME", "xdg-cache")):
    os.environ[_name] = os.path.join(_SESSION_HOME, _sub)
    os.makedirs(os.environ[_name], exist_ok=True)
os.environ.pop("HF_HUB_CACHE", None)

_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


def _is_loopback(address: object) -> bool:
    if isinstance(address, (str, bytes)):  # AF_UNIX path
        return True
    host = address[0] if isinstance(address, tuple) and address else address
    if isinstance(host, bytes):
        host = host.decode()
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
    except ValueError:
        return False


def _guarded(real):
    def connect(self, address):  # noqa: ANN001
        if self.family in (socket.AF_INET, socket.AF_INET6) and not _is_loopback(address):
            raise OSError(f"test tried to reach {address!r}: only 127.0.0.1 is allowed in tests")
        return real(self, address)

    return connect


@pytest.fixture(autouse=True)
def isolated_env(tmp_path_factory, monkeypatch):
    """Point every state/config dir at tmp, drop variables that would change behaviour, forbid real network."""
    base = tmp_path_factory.mktemp("env")
    for name, sub in (("GPTOSS_HOME", "gptoss-home"), ("HF_HOME", "hf-home"), ("XDG_CONFIG_HOME", "xdg-config")):
        path = base / sub
        path.mkdir()
        monkeypatch.setenv(name, str(path))
    for name in list(__import__("os").environ):
        if name.startswith("GPTOSS_") and name not in ("GPTOSS_HOME",):
            monkeypatch.delenv(name, raising=False)
    for name in ("HF_ENDPOINT", "HF_TOKEN", "NO_COLOR", "GPTOSS_DEBUG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):  # an engine load sets them for the whole process:
        monkeypatch.setenv(name, "0")  # recorded as absent, so they are removed again after each test
        monkeypatch.delenv(name)
    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None:  # read from the environment once, at import: maybe while an engine had it set
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(socket.socket, "connect", _guarded(_real_connect))
    monkeypatch.setattr(socket.socket, "connect_ex", _guarded(_real_connect_ex))
    yield base
