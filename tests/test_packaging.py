"""The wheel and sdist built from this checkout, and the wheel installed without extras into a fresh venv.

Nothing is downloaded: the build runs without isolation (``build`` and ``setuptools`` come with the dev extra), and
the fresh venv gets the base dependencies as links to this environment's copies of exactly the distributions the
wheel's metadata asks for, so torch, transformers, fastapi and uvicorn are really absent there.
"""

from __future__ import annotations

import email
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from gptoss_cli import __version__
from gptoss_cli.bundle import untar
from gptoss_cli.extras import TORCH_VERSION

ROOT = Path(__file__).resolve().parent.parent
INSTALL = "pip install 'gptoss-cli[serve]'"
DEMO_MODEL = ROOT / "gptoss_cli" / "demo" / "model"
SKIP_COPY = shutil.ignore_patterns(".git", ".venv", "venv", "build", "dist", "*.egg-info", "__pycache__", "*.pyc",
                                   ".hypothesis", ".pytest_cache", "gpt-oss", ".coord")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def dists(tmp_path_factory) -> dict[str, Path]:
    """``python -m build`` on a copy of the checkout: the sdist, then the wheel built from that sdist."""
    src = tmp_path_factory.mktemp("src") / "gptoss"
    shutil.copytree(ROOT, src, ignore=SKIP_COPY, symlinks=True)
    out = tmp_path_factory.mktemp("dist")
    done = subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(src)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "deprecat" not in (done.stdout + done.stderr).lower(), done.stdout + done.stderr
    (wheel,) = out.glob("gptoss_cli-*.whl")
    (sdist,) = out.glob("gptoss_cli-*.tar.gz")
    return {"wheel": wheel, "sdist": sdist}


@pytest.fixture(scope="module")
def wheel_files(dists) -> dict[str, bytes]:
    with zipfile.ZipFile(dists["wheel"]) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


@pytest.fixture(scope="module")
def sdist_names(dists) -> set[str]:
    with tarfile.open(dists["sdist"]) as tf:
        prefix = f"gptoss_cli-{__version__}/"
        return {m.name.removeprefix(prefix) for m in tf.getmembers() if m.isfile()}


def _metadata(text: str) -> email.message.Message:
    return email.message_from_string(text)


def _wheel_metadata(wheel_files) -> email.message.Message:
    return _metadata(wheel_files[f"gptoss_cli-{__version__}.dist-info/METADATA"].decode())


def test_wheel_metadata_is_pep_639(wheel_files):
    meta = _wheel_metadata(wheel_files)
    assert meta["License-Expression"] == "Apache-2.0"
    assert meta.get_all("License-File") == ["LICENSE"]
    assert meta["License"] is None, "the deprecated free-text License field is gone"
    assert Version(meta["Metadata-Version"]) >= Version("2.4")
    classifiers = meta.get_all("Classifier") or []
    assert "Programming Language :: Python :: 3.11" in classifiers and "Environment :: Console" in classifiers
    assert not [c for c in classifiers if c.startswith("License ::")], "PEP 639: the expression replaces these"
    # No project page exists yet: no URL may be invented (add a real one together with this assert).
    assert meta.get_all("Project-URL") is None and meta["Home-page"] is None
    assert "github.com/gptoss" not in str(meta)


def test_wheel_carries_the_licence_and_entry_point_and_no_tests(wheel_files):
    info = f"gptoss_cli-{__version__}.dist-info"
    assert wheel_files[f"{info}/licenses/LICENSE"] == (ROOT / "LICENSE").read_bytes()
    assert b"Apache License" in wheel_files[f"{info}/licenses/LICENSE"]
    entry = wheel_files[f"{info}/entry_points.txt"].decode()
    assert "gptoss = gptoss_cli.cli:main" in entry
    assert {name.split("/")[0] for name in wheel_files} == {"gptoss_cli", info}, "only the package goes in"
    modules = {p.relative_to(ROOT).as_posix() for p in (ROOT / "gptoss_cli").rglob("*.py")}
    assert modules <= set(wheel_files), sorted(modules - set(wheel_files))


def test_serve_extra_keeps_torch_out_of_the_base_install(wheel_files):
    reqs = [Requirement(r) for r in _wheel_metadata(wheel_files).get_all("Requires-Dist")]
    base = {canonicalize_name(r.name) for r in reqs if r.marker is None or r.marker.evaluate({"extra": ""})}
    serve = {canonicalize_name(r.name): r for r in reqs if r.marker and r.marker.evaluate({"extra": "serve"})
             and not r.marker.evaluate({"extra": ""})}
    assert not base & {"torch", "transformers", "fastapi", "uvicorn"}
    assert {"torch", "transformers", "safetensors", "tokenizers", "fastapi", "uvicorn"} <= set(serve)


def test_dependency_floors_are_what_the_code_needs(wheel_files):
    """Floors are honest: the serve path calls ``model(cache=...)``, which transformers has from 5.24 on."""
    declared = map(Requirement, _wheel_metadata(wheel_files).get_all("Requires-Dist"))
    reqs = {canonicalize_name(r.name): r for r in declared}
    transformers = reqs["transformers"].specifier
    assert not transformers.contains("4.57.6") and not transformers.contains("5.23.0")
    assert transformers.contains(metadata.version("transformers")) and not transformers.contains("6.0")
    assert not reqs["torch"].specifier.contains("2.4.0")
    for name, req in reqs.items():  # what this suite runs on satisfies every declared range
        if req.marker is None or req.marker.evaluate({"extra": "serve"}) or req.marker.evaluate({"extra": "dev"}):
            try:
                installed = metadata.version(req.name)
            except metadata.PackageNotFoundError:
                continue  # markers such as python_version < '3.11'
            assert req.specifier.contains(installed.split("+")[0], prereleases=True), (name, installed, str(req))


def test_sdist_ships_what_its_tests_need(sdist_names):
    wanted = {"LICENSE", "README.md", "CHANGELOG.md", "pyproject.toml", "MANIFEST.in", "PKG-INFO",
              "gptoss_cli/vocab/o200k_base.tiktoken", "tests/conftest.py", "scripts/setup.sh", "scripts/test.sh",
              "scripts/gen_completions.py", "scripts/gen_config_table.py", ".ci/run", "Dockerfile", "compose.yaml",
              ".dockerignore", "completions/gptoss.bash", "docs/deploy-with-dify.md"}
    assert wanted <= sdist_names, sorted(wanted - sdist_names)
    tracked = {p.relative_to(ROOT).as_posix() for d in ("tests", "bench", "scripts", "completions", "docs")
               for p in (ROOT / d).rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    assert tracked <= sdist_names, sorted(tracked - sdist_names)
    assert not [n for n in sdist_names if "__pycache__" in n or n.endswith(".pyc") or n.startswith(".venv/")]


def test_sdist_metadata(dists):
    with tarfile.open(dists["sdist"]) as tf:
        pkg_info = tf.extractfile(f"gptoss_cli-{__version__}/PKG-INFO").read().decode()
    meta = _metadata(pkg_info)
    assert meta["License-Expression"] == "Apache-2.0" and meta.get_all("Project-URL") is None


def test_demo_model_ships_in_wheel_and_sdist(wheel_files, sdist_names):
    """The shipped demo model (every file its lock lists, and the lock) is in both archives."""
    files = {p.relative_to(ROOT).as_posix() for p in DEMO_MODEL.iterdir() if p.is_file()}
    files.add("gptoss_cli/demo/gptoss.lock.json")
    assert {f"gptoss_cli/demo/model/{n}" for n in ("gptoss-demo.json", "config.json", "model.safetensors")} <= files
    assert files <= set(wheel_files), sorted(files - set(wheel_files))
    assert files <= sdist_names, sorted(files - sdist_names)


def test_sdist_tests_run_from_the_unpacked_sdist(dists, tmp_path):
    """The sdist is a source release: its own tests (fixtures, scripts, README checks) pass from it alone."""
    untar.extract(dists["sdist"], tmp_path)  # any Python 3.11 (tarfile's data filter needs 3.11.4)
    root = tmp_path / f"gptoss_cli-{__version__}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x",
                           "tests/test_completions.py", "tests/test_harmony_golden.py"],
                          cwd=root, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert " passed" in done.stdout and "failed" not in done.stdout


# -- the wheel, installed without extras into a fresh venv --------------------------------------------------------


def _base_distributions(requires: list[str]) -> list[metadata.Distribution]:
    """The installed distributions the base install needs: ``requires`` and theirs, extras followed, no others."""
    seen: dict[str, metadata.Distribution] = {}
    todo = [(Requirement(r), "") for r in requires]
    while todo:
        req, extra = todo.pop()
        if req.marker is not None and not req.marker.evaluate({"extra": extra}):
            continue
        dist = metadata.distribution(req.name)
        key = canonicalize_name(req.name)
        todo.extend((Requirement(r), e) for r in dist.requires or [] for e in ("", *req.extras))
        seen.setdefault(key, dist)
    return list(seen.values())


def _link_into(dist: metadata.Distribution, site: Path) -> None:
    tops = {Path(str(f)).parts[0] for f in dist.files or []} - {"..", "__pycache__"}
    for top in tops:
        src, dst = Path(str(dist.locate_file(top))), site / top
        if src.exists() and not dst.exists() and not top.endswith(".pth"):
            dst.symlink_to(src)


@pytest.fixture(scope="module")
def bare_venv(dists, wheel_files, tmp_path_factory) -> Path:
    venv = tmp_path_factory.mktemp("venv") / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True, timeout=60).stdout.strip())
    base = [r for r in _wheel_metadata(wheel_files).get_all("Requires-Dist") if "extra ==" not in r]
    for dist in _base_distributions(base):
        _link_into(dist, site)
    done = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
                           "--no-index", "--no-compile", str(dists["wheel"])],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return venv


def _run(venv: Path, *argv: str, home: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GPTOSS_", "PYTHON", "VIRTUAL_ENV"))}
    env.update(GPTOSS_HOME=str(home), HF_HOME=str(home / "hf"), XDG_CONFIG_HOME=str(home / "xdg"), COLUMNS="400")
    return subprocess.run([str(venv / "bin" / "gptoss"), *argv], cwd=home, env=env, capture_output=True, text=True,
                          timeout=120)


def test_bare_venv_has_no_extras(bare_venv):
    code = "import importlib.util as u; print([m for m in ('torch', 'transformers', 'fastapi', 'uvicorn', 'typer') " \
           "if u.find_spec(m)])"
    out = subprocess.run([str(bare_venv / "bin" / "python"), "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "['typer']", out.stdout + out.stderr
    where = subprocess.run([str(bare_venv / "bin" / "python"), "-c", "import gptoss_cli; print(gptoss_cli.__file__)"],
                           capture_output=True, text=True, timeout=60, cwd=bare_venv).stdout
    assert where.startswith(str(bare_venv)), where


def test_bare_install_runs_the_light_commands(bare_venv, tmp_path):
    version = _run(bare_venv, "--json", "--version", home=tmp_path)
    assert version.returncode == 0 and json.loads(version.stdout)["version"] == __version__
    assert _run(bare_venv, "verify", "--help", home=tmp_path).returncode == 0


@pytest.mark.parametrize("argv", [["serve", "--demo"], ["serve", "--engine", "upstream", "--upstream-url",
                                                          "http://127.0.0.1:9/v1"]])
def test_bare_install_serve_says_what_to_install(bare_venv, tmp_path, argv):
    done = _run(bare_venv, *argv, home=tmp_path)
    assert done.returncode == 3, done.stderr
    assert done.stdout == "" and len(done.stderr.splitlines()) == 1, done.stderr
    assert done.stderr.startswith("gptoss: error: ") and INSTALL in done.stderr
    assert "uvicorn" in done.stderr and not (tmp_path / "demo").exists()


def test_bare_install_doctor_table_and_json_agree(bare_venv, tmp_path):
    doc = json.loads(_run(bare_venv, "doctor", "--json", "--dest", str(tmp_path), home=tmp_path).stdout)
    rows = {c["name"]: c for c in doc["checks"]}
    assert rows["package torch"]["status"] == "warn" and INSTALL in rows["package torch"]["detail"]
    table = _run(bare_venv, "doctor", "--dest", str(tmp_path), home=tmp_path)
    assert table.returncode == 0, table.stderr
    for name in ("package torch", "package uvicorn", "torch/cuda"):
        assert rows[name]["detail"] in table.stdout, (name, table.stdout)


# -- scripts/setup.sh, with a stand-in interpreter that records what it is asked to install ------------------------


def _setup_calls(tmp_path: Path, **env: str) -> list[str]:
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "setup.sh", tmp_path / "scripts" / "setup.sh")
    fake = tmp_path / ".venv" / "bin" / "python"
    fake.parent.mkdir(parents=True)
    fake.write_text('#!/bin/sh\necho "$*" >> "$(dirname "$0")/calls"\n[ "$1" = -c ] && exit 1\nexit 0\n')
    fake.chmod(0o755)
    clean = {k: v for k, v in os.environ.items() if not k.startswith("GPTOSS_")}
    subprocess.run(["bash", str(tmp_path / "scripts" / "setup.sh"), "serve"], env={**clean, **env}, check=True,
                   timeout=60, capture_output=True)
    return (fake.parent / "calls").read_text().splitlines()


def test_setup_sh_installs_pinned_torch_first_then_the_checkout(tmp_path):
    calls = [c for c in _setup_calls(tmp_path) if not c.startswith("-c")]
    assert calls[-2:] == [f"-m pip install --quiet torch=={TORCH_VERSION}", "-m pip install --quiet -e .[serve]"]


def test_setup_sh_takes_torch_from_the_index_it_is_given(tmp_path):
    cpu = "https://download.pytorch.org/whl/cpu"
    calls = _setup_calls(tmp_path, GPTOSS_TORCH_INDEX_URL=cpu)
    assert f"-m pip install --quiet torch=={TORCH_VERSION} --index-url {cpu}" in calls


def test_readme_and_docs_install_nothing_from_an_index_that_lacks_it():
    """gptoss-cli is on no package index: no command may fetch it from one (a local --find-links folder is fine)."""
    for doc in (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))):
        text = doc.read_text()
        blocks = re.findall(r"```(?:bash|sh|shell)\n(.*?)```", text, flags=re.S)
        commands = [line.split("#")[0] for block in blocks for line in block.splitlines()]
        commands += [line for line in text.splitlines() if "pip download" in line]
        for command in commands:
            if re.search(r"pip3? (install|download)\b", command) and "gptoss-cli" in command:
                assert "--find-links" in command, f"{doc.name}: {command.strip()}"


def test_the_o200k_vocabulary_ships_in_the_wheel_byte_exact(wheel_files):
    """vLLM's harmony tokenizer reads it offline (TIKTOKEN_ENCODINGS_BASE); a copy in the wheel means no download."""
    import hashlib

    from gptoss_cli.vocab import O200K_SHA256

    data = wheel_files["gptoss_cli/vocab/o200k_base.tiktoken"]
    assert hashlib.sha256(data).hexdigest() == O200K_SHA256
