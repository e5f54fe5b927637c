"""A real ``redis-server`` on 127.0.0.1 (free port, no persistence, tmp dir) for the response-cache tests.

Import the fixture into a test module: ``from tests.redis_fixtures import redis_url``. Without the binary the tests
that use it are skipped with the reason (CI installs Debian's ``redis-server``).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from typing import Iterator

import pytest
from tests.ports import free_port as _free_port



def _ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory) -> Iterator[int]:
    """Start redis-server on a free loopback port; yield the port."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server); Redis cache path not tested")
    workdir = tmp_path_factory.mktemp("redis")
    port = _free_port()
    proc = subprocess.Popen(
        [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no",
         "--dir", str(workdir), "--protected-mode", "yes"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while not _ping(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.skip("redis-server did not start on 127.0.0.1")
            time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


@pytest.fixture
def redis_url(redis_server: int) -> str:
    """A URL to a fresh logical database (flushed before the test)."""
    with socket.create_connection(("127.0.0.1", redis_server), timeout=2) as s:
        s.sendall(b"FLUSHALL\r\n")
        s.recv(16)
    return f"redis://127.0.0.1:{redis_server}/0"


__all__ = ["redis_server", "redis_url"]
