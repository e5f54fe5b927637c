"""A whole deployment world for ``gptoss up`` tests, every part real and on 127.0.0.1:

* a loopback Hub serving the shipped demo model's files as ``org/demo`` (the real huggingface_hub protocol),
* a git repo in tmp (cloned through ``file://``) whose ``requirements.txt`` the audit reads,
* the fake OSV service for pip-audit, and the fake Dify console (which validates by calling the real server),
* a ``gptoss.toml`` in a tmp working directory that ties them together, and a runner for the real CLI as a child.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.dify_fake import FakeDify
from tests.git_fixtures import git
from tests.hub_fixtures import FakeHub, FakeRepo
from tests.osv_fixtures import FakeOsv
from tests.ports import free_port

UP_TIMEOUT = float(os.environ.get("GPTOSS_TEST_DEMO_TIMEOUT", "240"))
DIFY_PASSWORD_VAR = "GPTOSS_TEST_DIFY_PW"


def make_code_repo(root: Path, requirements: str) -> str:
    """A bare repo with one commit holding ``requirements.txt``; returns its file:// URL."""
    work = root / "work-code"
    work.mkdir(parents=True)
    git("init", "-q", "-b", "main", cwd=work)
    (work / "requirements.txt").write_text(requirements)
    (work / "README.md").write_text("gpt-oss code (test)\n")
    git("add", "-A", cwd=work)
    git("commit", "-q", "-m", "code", cwd=work)
    bare = root / "code.git"
    git("clone", "-q", "--bare", str(work), str(bare), cwd=root)
    return bare.as_uri()


@dataclass
class World:
    cwd: Path
    hub: FakeHub
    osv: FakeOsv
    dify: FakeDify
    port: int
    env: dict[str, str] = field(default_factory=dict)

    @property
    def dest(self) -> Path:
        return self.cwd / "deploy"

    def gptoss(self, *args: str, timeout: float = UP_TIMEOUT, check_json: bool = False) -> subprocess.CompletedProcess:
        proc = subprocess.run([sys.executable, "-m", "gptoss_cli", *args], cwd=self.cwd, env=self.env,
                              capture_output=True, text=True, timeout=timeout)
        if check_json:
            json.loads(proc.stdout)
        return proc

    def json(self, *args: str, timeout: float = UP_TIMEOUT) -> tuple[int, dict[str, Any], str]:
        proc = self.gptoss(*args, "--json", timeout=timeout)
        try:
            doc = json.loads(proc.stdout)
        except ValueError:
            raise AssertionError(f"not one JSON document (exit {proc.returncode}): {proc.stdout!r} {proc.stderr}")
        return proc.returncode, doc, proc.stderr

    def status(self) -> dict[str, Any]:
        code, doc, err = self.json("status")
        assert code == 0, err
        return doc

    def stages(self, doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
        return {s["name"]: s for s in doc["stages"]}

    def hub_requests(self) -> int:
        return len(self.hub.requests)


def demo_repo() -> FakeRepo:
    from gptoss_cli.demo import demo_model_dir

    folder = demo_model_dir()
    return FakeRepo.build("org/demo", {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()})


@pytest.fixture
def world_factory(tmp_path: Path) -> Iterator[Any]:
    """``make(requirements="demo-safe==1.0\\n")`` → a :class:`World`; everything stops at the end of the test."""
    started: list[Any] = []

    def make(requirements: str = "demo-safe==1.0\n", dify_version: str = "1.13.3") -> World:
        hub = FakeHub([demo_repo()]).start()
        started.append(hub)
        osv = FakeOsv().__enter__()
        started.append(osv)
        dify = FakeDify(version=dify_version, validate_timeout=120.0).__enter__()
        started.append(dify)
        code_url = make_code_repo(tmp_path / "remote", requirements)
        cwd = tmp_path / "work"
        cwd.mkdir()
        port = free_port()
        (cwd / "gptoss.toml").write_text(
            f'[fetch]\ndest = "deploy"\nendpoint = "{hub.url}"\nmodel = "org/demo"\nrepo_url = "{code_url}"\n'
            f'[audit]\nosv_url = "{osv.url}"\n'
            f'[serve]\nport = {port}\ndevice = "cpu"\n'
            f'[dify]\nurl = "{dify.url}"\nemail = "{dify.email}"\npassword_env = "{DIFY_PASSWORD_VAR}"\n'
            f'[up]\nready_timeout = {UP_TIMEOUT}\n')
        env = {**os.environ, DIFY_PASSWORD_VAR: dify.password, "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
        env.pop("GPTOSS_API_KEY", None)
        return World(cwd, hub, osv, dify, port, env)

    yield make
    for thing in reversed(started):
        if isinstance(thing, FakeHub):
            thing.stop()
        else:
            thing.__exit__(None, None, None)


def stop_server(world: World) -> None:
    """Stop a detached server a test left running (never leak a process)."""
    world.gptoss("stop", timeout=90)


__all__ = ["DIFY_PASSWORD_VAR", "UP_TIMEOUT", "World", "demo_repo", "make_code_repo", "stop_server",
           "world_factory"]
