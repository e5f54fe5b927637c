"""Unpacking a bundle tar (gptoss_cli/bundle/untar.py) on every Python 3.11: the same checks with and without
tarfile's ``data`` filter (absent before 3.11.4, e.g. Debian 12's 3.11.2) — nothing outside the folder, no links out,
no special files, no set-id bits — and a refused archive writes nothing."""

from __future__ import annotations

import io
import stat
import tarfile
from pathlib import Path

import pytest

from gptoss_cli.bundle import untar


@pytest.fixture(params=[True, False], ids=["data-filter", "no-data-filter"])
def filter_mode(request, monkeypatch):
    if request.param and not untar.HAS_DATA_FILTER:
        pytest.skip("this Python has no tarfile data filter")
    monkeypatch.setattr(untar, "HAS_DATA_FILTER", request.param)
    return request.param


def _tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    with tarfile.open(path, "w") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _file(name: str, data: bytes = b"x", mode: int = 0o644) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.mode = mode
    return info, data


def _special(name: str, kind: bytes, linkname: str = "") -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, linkname
    return info, None


def test_a_bundle_unpacks_with_modes_made_harmless(tmp_path, filter_mode):
    top = tarfile.TarInfo("b")
    top.type, top.mode = tarfile.DIRTYPE, 0o777
    archive = _tar(tmp_path / "b.tar", [
        (top, None), _file("b/install.sh", b"#!/bin/sh\n", 0o4777), _file("b/model/w.bin", b"weights", 0o666),
        _special("b/model/same.bin", tarfile.LNKTYPE, "b/model/w.bin"),
    ])
    dest = tmp_path / "out"
    dest.mkdir()
    untar.extract(archive, dest)
    script, weights = dest / "b" / "install.sh", dest / "b" / "model" / "w.bin"
    assert script.read_bytes() == b"#!/bin/sh\n" and weights.read_bytes() == b"weights"
    assert (dest / "b" / "model" / "same.bin").read_bytes() == b"weights"
    assert stat.S_IMODE(script.stat().st_mode) == 0o755  # no setuid, no group/other write
    assert stat.S_IMODE(weights.stat().st_mode) == 0o644
    assert not stat.S_IMODE((dest / "b").stat().st_mode) & 0o022


@pytest.mark.parametrize("member, says", [
    (_file("../escape.txt"), "points outside"),
    (_file("/etc/escape.txt"), "points outside"),
    (_file("b/../../escape.txt"), "points outside"),
    (_special("b/link", tarfile.SYMTYPE, "/etc/passwd"), "symlink or special file"),
    (_special("b/inner", tarfile.SYMTYPE, "w.bin"), "symlink or special file"),
    (_special("b/fifo", tarfile.FIFOTYPE), "symlink or special file"),
    (_special("b/dev", tarfile.CHRTYPE), "symlink or special file"),
    (_special("b/hard", tarfile.LNKTYPE, "../../etc/passwd"), "points outside"),
    (_special("b/hard", tarfile.LNKTYPE, "b/later.bin"), "not unpacked before it"),
], ids=["dotdot", "absolute", "nested-dotdot", "symlink-out", "symlink-in", "fifo", "device", "hardlink-out",
        "hardlink-forward"])
def test_unsafe_members_refuse_the_whole_archive_before_anything_is_written(tmp_path, filter_mode, member, says):
    archive = _tar(tmp_path / "bad.tar", [_file("b/first.txt"), member, _file("b/later.bin")])
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(untar.UnsafeMember, match=says):
        untar.extract(archive, dest)
    assert list(dest.iterdir()) == [] and not (tmp_path / "escape.txt").exists()


def test_bundle_install_refuses_an_unsafe_tar_with_one_line_and_exit_1(tmp_path, filter_mode):
    from typer.testing import CliRunner

    from gptoss_cli.cli import app

    archive = _tar(tmp_path / "bad.tar", [_file("b/manifest.json", b"{}"), _file("b/../../escape.txt")])
    target = tmp_path / "srv" / "gpt-oss"
    res = CliRunner().invoke(app, ["bundle", "install", str(archive), "--dest", str(target), "--no-pip"])
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert res.exit_code == 1 and len(lines) == 1, res.output
    assert "refused" in lines[0] and "escape.txt" in lines[0] and "nothing was installed" in lines[0]
    assert not target.exists() and not (tmp_path / "escape.txt").exists()
    assert not [p for p in (tmp_path / "srv").glob(".gptoss-bundle-*")]  # the temporary folder is gone
