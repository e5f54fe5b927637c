"""``gptoss bundle create`` / ``install``: a DEST fetched from the loopback hub, carried to a fresh venv, no index.

The wheels come from this environment (``wheel_fixtures``: the installed distributions packed back into wheels;
gptoss's own is built from the checkout), so nothing is downloaded. The install runs the bundle's ``install.sh``
in a new venv with ``PIP_INDEX_URL`` at a dead loopback port: it can only succeed from the bundle's own wheels.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gptoss_cli.bundle import wheels as bundle_wheels
from gptoss_cli.bundle.create import BundleOptions
from gptoss_cli.bundle.standalone import sha256_file
from gptoss_cli.cli import app
from gptoss_cli.lockfile import read_lock
from tests.git_fixtures import BareRepo, bare_repo, git  # noqa: F401 - fixture
from tests.hub_fixtures import FakeHub, fake_hub  # noqa: F401 - fixture
from tests.wheel_fixtures import base_wheels

runner = CliRunner()
ROOT = Path(__file__).resolve().parent.parent
VOCAB = ROOT / "gptoss_cli" / "vocab" / "o200k_base.tiktoken"
SHARD = "model-00000-of-00002.safetensors"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheels")
    base_wheels(out)
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet",
                            "-w", str(out), str(ROOT)], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stdout + built.stderr  # gptoss's own, built once from this checkout
    return out


@pytest.fixture
def dest(tmp_path: Path, fake_hub: FakeHub, bare_repo: BareRepo) -> Path:
    path = tmp_path / "gpt-oss"
    res = runner.invoke(app, ["fetch", "--endpoint", fake_hub.url, "--model", "org/tiny", "--dest", str(path),
                              "--repo-url", bare_repo.url, "--ref", bare_repo.commits[1]])
    assert res.exit_code == 0, res.output
    return path


def _create(out: Path, dest: Path, wheel_dir: Path, *extra: str):
    return runner.invoke(app, ["--json", "bundle", "create", str(out), "--dest", str(dest), "--no-serve",
                               "--wheels", str(wheel_dir), "--vocab", str(VOCAB), *extra])


@pytest.fixture
def bundle(tmp_path: Path, dest: Path, wheel_dir: Path) -> Path:
    res = _create(tmp_path / "bundle", dest, wheel_dir)
    assert res.exit_code == 0, res.output
    return tmp_path / "bundle"


def _dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _offline_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "GPTOSS_", "PYTEST", "VIRTUAL_ENV"))}
    env["PIP_INDEX_URL"] = f"http://127.0.0.1:{_dead_port()}/simple"  # nothing listens there
    env["GPTOSS_HOME"] = os.environ["GPTOSS_HOME"]
    return env


def test_manifest_lists_every_file_with_its_hash(bundle: Path, dest: Path) -> None:
    manifest = json.loads((bundle / "manifest.json").read_text())
    listed = {f["path"]: f for f in manifest["files"]}
    on_disk = {p.relative_to(bundle).as_posix() for p in bundle.rglob("*") if p.is_file()} - {"manifest.json"}
    assert set(listed) == on_disk
    for rel, entry in listed.items():
        assert sha256_file(bundle / rel) == entry["sha256"] and (bundle / rel).stat().st_size == entry["size"]
    assert {"install.sh", "install.py", "requirements.txt", "vocab/o200k_base.tiktoken",
            "dest/gptoss.lock.json", f"dest/model/{SHARD}"} <= on_disk
    assert any(p.startswith("dest/code/.git/") for p in on_disk)
    assert any(p.startswith("wheels/gptoss_cli-") for p in on_disk)
    assert manifest["parts"]["dest"]["code_commit"] == read_lock(dest).code.commit
    assert (bundle / "requirements.txt").read_text().split() == [f"gptoss-cli=={manifest['gptoss_version']}"]


def test_carried_to_a_fresh_venv_with_no_index(bundle: Path, bare_repo: BareRepo, tmp_path: Path) -> None:
    usb = tmp_path / "usb" / "bundle"
    shutil.copytree(bundle, usb)  # another disk: nothing shared with the original by hard links
    venv, target = tmp_path / "offline-venv", tmp_path / "srv" / "gpt-oss"
    done = subprocess.run(["sh", str(usb / "install.sh"), "--dest", str(target), "--venv", str(venv)],
                          env=_offline_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "files match the manifest" in done.stderr and "verified" in done.stdout
    where = subprocess.run([str(venv / "bin" / "python"), "-c", "import gptoss_cli; print(gptoss_cli.__file__)"],
                           capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert str(venv) in where.stdout, where.stdout + where.stderr  # the bundled wheel, not this checkout
    check = subprocess.run([str(venv / "bin" / "gptoss"), "--json", "verify", str(target)], env=_offline_env(),
                           capture_output=True, text=True, timeout=120)
    assert check.returncode == 0 and json.loads(check.stdout)["ok"], check.stdout + check.stderr
    assert git("rev-parse", "HEAD", cwd=target / "code") == bare_repo.commits[1]
    assert sha256_file(target / "vocab" / "o200k_base.tiktoken") == sha256_file(VOCAB)


@pytest.mark.parametrize("damage", ["tampered", "missing", "unlisted"])
def test_a_damaged_bundle_refuses_the_install(bundle: Path, tmp_path: Path, damage: str) -> None:
    if damage == "tampered":
        path = bundle / "dest" / "model" / SHARD
        data = bytearray(path.read_bytes())
        data[-1] ^= 1
        path.unlink()  # a hard link to DEST: write a new file, leave DEST alone
        path.write_bytes(bytes(data))
        name = f"dest/model/{SHARD}"
    elif damage == "missing":
        name = next(p.relative_to(bundle).as_posix() for p in (bundle / "wheels").glob("httpx-*.whl"))
        (bundle / name).unlink()
    else:
        name = "wheels/evil-1.0-py3-none-any.whl"
        (bundle / name).write_bytes(b"PK")
    venv, target = tmp_path / "venv", tmp_path / "target"
    script = subprocess.run(["sh", str(bundle / "install.sh"), "--dest", str(target), "--venv", str(venv)],
                            env=_offline_env(), capture_output=True, text=True, timeout=120)
    assert script.returncode == 1 and name in script.stderr, script.stderr
    res = runner.invoke(app, ["bundle", "install", str(bundle), "--dest", str(target), "--venv", str(venv)])
    assert res.exit_code == 1 and name in res.stderr and "nothing was installed" in res.stderr, res.output
    assert not venv.exists() and not target.exists()


def test_tar_bundle_installs_and_manifest_digest_is_checked(tmp_path: Path, dest: Path, wheel_dir: Path) -> None:
    res = _create(tmp_path / "gptoss-bundle.tar", dest, wheel_dir)
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["format"] == "tar" and len(doc["manifest_sha256"]) == 64
    target = tmp_path / "srv" / "gpt-oss"
    wrong = runner.invoke(app, ["bundle", "install", doc["path"], "--dest", str(target), "--no-pip",
                                "--manifest-sha256", "0" * 64])
    assert wrong.exit_code == 1 and "SHA-256" in wrong.stderr and not target.exists()
    ok = runner.invoke(app, ["--json", "bundle", "install", doc["path"], "--dest", str(target), "--no-pip",
                             "--manifest-sha256", doc["manifest_sha256"]])
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)["files_checked"] == doc["files"] - 1
    assert read_lock(target).files == read_lock(dest).files
    assert [p.name for p in target.parent.iterdir()] == ["gpt-oss"]  # the unpacked tar is gone


def test_create_refuses_a_bad_dest_a_used_out_and_a_wrong_vocab(tmp_path: Path, dest: Path, wheel_dir: Path
                                                                ) -> None:
    used = tmp_path / "used"
    used.mkdir()
    (used / "x").write_text("x")
    res = _create(used, dest, wheel_dir)
    assert res.exit_code == 2 and "already exists" in res.stderr
    bad_vocab = tmp_path / "o200k_base.tiktoken"
    bad_vocab.write_text("not it")
    res = _create(tmp_path / "b1", dest, wheel_dir, "--vocab", str(bad_vocab))
    assert res.exit_code == 3 and "SHA-256" in res.stderr
    (dest / "model" / "config.json").write_text("{}")
    res = _create(tmp_path / "b2", dest, wheel_dir)
    assert res.exit_code == 1 and "does not match its lock" in res.stderr
    assert not (tmp_path / "b2").exists() and not (tmp_path / "b2.partial").exists()


def test_pip_download_asks_for_the_serve_extra_and_pinned_torch_for_the_target(monkeypatch, tmp_path: Path
                                                                               ) -> None:
    calls: list[list[str]] = []

    def fake_pip(args: list[str], what: str, log) -> None:
        calls.append(args)
        if args[0] == "wheel":
            (Path(args[args.index("-w") + 1]) / "gptoss_cli-0.1.0-py3-none-any.whl").write_bytes(b"")

    monkeypatch.setattr(bundle_wheels, "pip", fake_pip)
    monkeypatch.setattr(bundle_wheels, "check_complete", lambda *a: calls.append(["check"]))
    monkeypatch.setattr("gptoss_cli.__version__", "0.1.0")
    options = BundleOptions(out=tmp_path / "o", dest=tmp_path, python_version="3.11",
                            platforms=("manylinux_2_28_x86_64",))
    reqs = bundle_wheels.requirements("0.1.0", serve=True, torch=options.torch)
    assert reqs == ("gptoss-cli[serve]==0.1.0", "torch==2.13.0")
    bundle_wheels.collect(options, reqs, tmp_path / "wheels", lambda _m: None)
    download = calls[-2]
    assert calls[-1] == ["check"]
    assert download[0] == "download" and "--only-binary=:all:" in download
    assert download[download.index("--python-version") + 1] == "3.11"
    platforms = [download[i + 1] for i, a in enumerate(download) if a == "--platform"]
    assert platforms[0] == "manylinux_2_28_x86_64" and "manylinux_2_17_x86_64" in platforms
    assert "manylinux2014_x86_64" in platforms and "manylinux_2_29_x86_64" not in platforms
    assert download[-2].endswith("gptoss_cli-0.1.0-py3-none-any.whl[serve]") and download[-1] == "torch==2.13.0"
    for torch in ("torch", "torch>=2.13", "numpy==2.0"):
        with pytest.raises(Exception, match="pin torch"):
            bundle_wheels.requirements("0.1.0", serve=True, torch=torch)


def test_documented_bundle_and_service_flags_exist() -> None:
    """Every --flag the README and the deploy guides give to `gptoss bundle …` / `gptoss service unit` is real."""
    import re

    import typer

    root = typer.main.get_command(app)
    for doc in ("README.md", "docs/deploy-with-dify.md", "docs/deploy-with-dify.zh-CN.md"):
        text = (ROOT / doc).read_text(encoding="utf-8")
        found = re.findall(r"gptoss (bundle|service) (create|install|unit)\b([^\n`]*)", text)
        assert found, doc
        for group, name, rest in found:
            command = root.get_command(None, group).get_command(None, name)
            known = {opt for p in command.params for opt in (*p.opts, *p.secondary_opts)}
            for flag in re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", re.split(r" #|&&|\|", rest)[0]):
                assert flag in known or flag in ("--json",), f"{doc}: gptoss {group} {name} … {flag}"


def test_kernels_and_osv_travel_and_no_git_credential_does(tmp_path: Path, dest: Path, wheel_dir: Path) -> None:
    from tests.osv_fixtures import write_export_zip

    kernels = tmp_path / "hf-cache" / "hub" / "models--kernels-community--gpt-oss-triton-kernels"
    (kernels / "snapshots" / "abc").mkdir(parents=True)
    (kernels / "snapshots" / "abc" / "kernel.py").write_text("# kernel\n")
    osv = write_export_zip(tmp_path / "all.zip")
    config = dest / "code" / ".git" / "config"
    config.write_text(config.read_text() + '[remote "mirror"]\n\turl = https://bob:s3cr3t-tok@example.com/x.git\n')
    res = _create(tmp_path / "b", dest, wheel_dir, "--kernels", str(tmp_path / "hf-cache"), "--osv-db", str(osv))
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["parts"]["osv"] == "osv/all.zip" and doc["parts"]["kernels"] == {"files": 1}
    assert not [p for p in (tmp_path / "b").rglob("*") if p.is_file() and b"s3cr3t-tok" in p.read_bytes()]
    assert "s3cr3t-tok" in config.read_text()  # DEST itself is left as it was
    target = tmp_path / "target"
    ok = runner.invoke(app, ["bundle", "install", str(tmp_path / "b"), "--dest", str(target), "--no-pip"])
    assert ok.exit_code == 0, ok.output
    assert (target / "kernels" / kernels.relative_to(tmp_path / "hf-cache") / "snapshots" / "abc" / "kernel.py"
            ).read_text() == "# kernel\n"
    assert (target / "osv" / "all.zip").read_bytes() == osv.read_bytes()
    (tmp_path / "req.txt").write_text("requests==2.0.0\n")
    audit = runner.invoke(app, ["--json", "audit", "-r", str(tmp_path / "req.txt"), "--osv-db",
                                str(target / "osv" / "all.zip")])
    assert audit.exit_code in (0, 1), audit.output  # the carried snapshot is what an offline audit reads


def test_create_refuses_wheels_that_do_not_cover_the_requirements(tmp_path: Path, dest: Path, wheel_dir: Path
                                                                 ) -> None:
    partial = tmp_path / "partial"
    shutil.copytree(wheel_dir, partial)
    for wheel in partial.glob("rich-*.whl"):
        wheel.unlink()
    res = _create(tmp_path / "b", dest, partial)
    assert res.exit_code == 3 and "do not satisfy" in res.stderr and "rich" in res.stderr, res.output
    assert not (tmp_path / "b").exists() and not (tmp_path / "b.partial").exists()
    with_target = _create(tmp_path / "c", dest, wheel_dir, "--python", "3.11", "--platform", "manylinux_2_28_x86_64")
    assert with_target.exit_code == 0, with_target.output  # the same check, for a named target
    assert json.loads(with_target.stdout)["parts"]["wheels"]


def test_install_py_needs_only_the_standard_library() -> None:
    import ast

    from gptoss_cli.bundle import standalone

    tree = ast.parse(Path(standalone.__file__).read_text())
    names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert names - {"__future__"} <= set(sys.stdlib_module_names), names - set(sys.stdlib_module_names)


def test_up_imports_a_bundle_then_skips_it_and_refuses_a_tampered_one(bundle: Path, tmp_path: Path,
                                                                       monkeypatch) -> None:
    """``gptoss up --bundle``: the fetch stage imports DEST from the bundle (hashes first, no pip: the software is
    installed here), verify re-hashes it; a second run skips the import and says it verified the files."""
    monkeypatch.chdir(tmp_path)
    target = tmp_path / "air-gapped" / "gpt-oss"
    args = ["--json", "up", "--bundle", str(bundle), "--dest", str(target), "--no-audit", "--no-serve",
            "--no-register"]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    stages = {s["name"]: s for s in json.loads(first.stdout)["stages"]}
    assert stages["fetch"]["status"] == "done" and "imported the bundle" in stages["fetch"]["summary"]
    assert stages["verify"]["status"] in ("done", "skipped")
    assert read_lock(target / "gptoss.lock.json").files == read_lock(bundle / "dest" / "gptoss.lock.json").files
    second = runner.invoke(app, args)
    assert second.exit_code == 0, second.output
    fetch = {s["name"]: s for s in json.loads(second.stdout)["stages"]}["fetch"]
    assert fetch["status"] == "skipped" and "verified" in fetch["summary"]
    shard = next((bundle / "dest" / "model").glob("*.safetensors"))
    shard.write_bytes(shard.read_bytes()[:-1] + b"\x00")  # one byte changed in the carried copy
    fresh = tmp_path / "elsewhere" / "gpt-oss"
    bad = runner.invoke(app, ["--json", "up", "--bundle", str(bundle), "--dest", str(fresh), "--no-audit",
                              "--no-serve", "--no-register"])
    assert bad.exit_code == 1, bad.output
    assert not (fresh / "model").exists() or not any((fresh / "model").glob("*.safetensors"))
