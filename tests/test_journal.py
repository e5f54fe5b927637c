"""The journal's chain: every way of changing it is found and named (edited, deleted, inserted, reordered) with its
line; rotation and restarts keep one chain; a failed write leaves no half line; ``gptoss journal verify``."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gptoss_cli.cli import app
from gptoss_cli.errors import CouldNotRun
from gptoss_cli.journal.chain import GENESIS, seal, unseal
from gptoss_cli.journal.verify import chain_order, verify_journal
from gptoss_cli.journal.writer import JournalWriter


def write(path: Path, n: int, **kwargs) -> JournalWriter:
    w = JournalWriter(path, **kwargs).open()
    for i in range(n):
        assert w.append({"kind": "request", "id": f"r{i}", "status": 200, "user": "ü"})
    w.close()
    return w


@pytest.fixture
def journal(tmp_path) -> tuple[Path, list[bytes]]:
    path = tmp_path / "journal.jsonl"
    write(path, 8)
    return path, path.read_bytes().splitlines(keepends=True)


def problem(path: Path, lines: list[bytes]):
    path.write_bytes(b"".join(lines))
    report = verify_journal([path])
    return None if report.ok else (report.problem.kind, report.problem.line)


def resealed(line: bytes, **changes) -> bytes:
    record = unseal(line.rstrip(b"\n"))
    fields = {k: v for k, v in record.fields.items() if k not in ("seq", "prev", "hash")}
    return seal({**fields, **changes}, seq=record.seq, prev=record.prev)[0]


def test_an_intact_journal_verifies(journal):
    path, lines = journal
    report = verify_journal([path])
    assert report.ok and report.records == 8 and report.last_seq == 8 and report.kinds == {"request": 8}
    first = json.loads(lines[0])
    assert first["prev"] == GENESIS and first["seq"] == 1 and first["user"] == "ü"
    assert json.loads(lines[1])["prev"] == first["hash"]


@pytest.mark.parametrize("line", [0, 3, 7])
def test_an_edited_line_is_named(journal, line):
    path, lines = journal
    lines[line] = lines[line].replace(b'"status":200', b'"status":201')
    assert problem(path, lines) == ("edited", line + 1)


def test_an_edit_with_its_hash_recomputed_is_found_by_the_next_line(journal):
    path, lines = journal
    lines[2] = resealed(lines[2], status=500)
    assert problem(path, lines) == ("edited", 3)


def test_a_line_that_is_not_a_record_is_named(journal):
    path, original = journal
    lines = list(original)
    lines[4] = b"garbage\n"
    assert problem(path, lines) == ("edited", 5)
    lines = original[:7] + [original[7].rstrip(b"\n")]  # no final newline
    assert problem(path, lines) == ("edited", 8)


@pytest.mark.parametrize("gone,reported", [(0, 1), (3, 4), ([3, 4], 4)])
def test_deleted_lines_are_found_where_the_gap_is(journal, gone, reported):
    path, lines = journal
    for i in sorted(gone if isinstance(gone, list) else [gone], reverse=True):
        del lines[i]
    assert problem(path, lines) == ("deleted", reported)


def test_inserted_lines_are_found(journal, tmp_path):
    path, lines = journal
    original = list(lines)
    lines.insert(3, b'{"kind":"request","id":"forged","status":200}\n')
    assert problem(path, lines) == ("inserted", 4)
    lines = list(original)
    lines.insert(5, original[1])  # a replayed copy of an earlier record
    assert problem(path, lines) == ("inserted", 6)
    forged, _ = seal({"kind": "request", "id": "forged"}, seq=3, prev=unseal(original[1].rstrip()).hash)
    lines = list(original)
    lines.insert(2, forged)  # a well-formed record with the right seq and prev
    assert problem(path, lines) == ("inserted", 3)


@pytest.mark.parametrize("a,b,reported", [(0, 1, 1), (2, 3, 3), (6, 7, 7), (1, 5, 2)])
def test_reordered_lines_are_found(journal, a, b, reported):
    path, lines = journal
    lines[a], lines[b] = lines[b], lines[a]
    assert problem(path, lines) == ("reordered", reported)


def test_rotation_keeps_one_chain_across_files_and_restarts(tmp_path):
    path = tmp_path / "j.jsonl"
    write(path, 12, max_bytes=600)
    write(path, 3, max_bytes=600)  # a restart continues after the last record
    files = sorted(p.name for p in tmp_path.iterdir() if p.suffix != ".head")
    assert len(files) > 3 and all(p.stat().st_size <= 600 for p in tmp_path.iterdir())
    assert (tmp_path / "j.jsonl.head").is_file()
    report = verify_journal([path])
    assert report.ok and report.records == 15 and report.last_seq == 15 and len(report.files) == len(files)
    assert report.files[-1] == str(path) and report.files[0].endswith(f".{len(files) - 1}")
    first_of_new = json.loads(path.read_bytes().splitlines()[0])
    assert first_of_new["prev"] == json.loads((tmp_path / "j.jsonl.1").read_bytes().splitlines()[-1])["hash"]
    (tmp_path / "j.jsonl.2").unlink()  # a whole rotated file removed
    report = verify_journal([path])
    assert report.problem.kind == "deleted" and report.problem.file == str(tmp_path / "j.jsonl.1")
    assert verify_journal([path]).problem.line == 1


def test_files_given_in_any_order_are_put_in_chain_order(tmp_path):
    names = [tmp_path / n for n in ("j", "j.1", "j.10", "j.2")]
    assert chain_order([names[0], names[3], names[1], names[2]]) == [names[2], names[3], names[1], names[0]]


def test_a_new_file_continues_the_chain_of_the_rotated_one(tmp_path):
    path = tmp_path / "j.jsonl"
    w = write(path, 5)
    path.rename(tmp_path / "j.jsonl.1")  # e.g. rotated by hand, or a stop between the rename and the new file
    w2 = JournalWriter(path).open()
    assert w2.seq == 5 and w2.last_hash == w.last_hash
    assert w2.append({"kind": "request"})
    w2.close()
    assert verify_journal([path]).ok and verify_journal([path]).records == 6


def test_opening_a_journal_whose_last_line_is_damaged_is_refused(journal):
    path, lines = journal
    path.write_bytes(b"".join(lines[:-1]) + lines[-1][:-10])
    with pytest.raises(CouldNotRun, match="damaged"):
        JournalWriter(path).open()
    path.write_bytes(b"".join(lines[:-1]) + lines[-1].replace(b"200", b"500"))
    with pytest.raises(CouldNotRun, match="damaged") as err:
        JournalWriter(path).open()
    assert "gptoss journal verify" in err.value.hint


def test_a_failed_write_leaves_no_half_line_and_the_gap_is_recorded(tmp_path):
    path = tmp_path / "j.jsonl"
    full = [False]

    def write_(fd, data):
        if full[0] and len(data) > 30:
            return os.write(fd, data[:7])  # a short write: the disk is full after these bytes
        if full[0]:
            raise OSError(errno.ENOSPC, "No space left on device")
        return os.write(fd, data)

    w = JournalWriter(path, write=write_).open()
    assert w.append({"kind": "request", "id": "a"})
    full[0] = True
    assert not w.append({"kind": "request", "id": "b"}, record_id="b")
    assert not w.healthy and w.last_error == "No space left on device"
    assert not w.probe() and not w.append({"kind": "request", "id": "c"}, record_id="c")
    assert path.read_bytes().count(b"\n") == 1 and path.read_bytes().endswith(b"\n")
    full[0] = False
    assert w.append({"kind": "request", "id": "d"}) and w.healthy
    w.close()
    records = [json.loads(line) for line in path.read_bytes().splitlines()]
    assert [r.get("id") for r in records] == ["a", None, "d"]
    assert records[1]["event"] == "resumed" and records[1]["lost"] == 2 and records[1]["lost_ids"] == ["b", "c"]
    assert verify_journal([path]).ok


def test_dev_full_is_a_failed_write_not_a_crash():
    w = JournalWriter("/dev/full").open()
    assert not w.append({"kind": "start"}) and not w.healthy
    w.close()


def run(*args: str):
    return CliRunner().invoke(app, ["journal", "verify", *args], catch_exceptions=False)


def test_cli_verify_exit_codes_and_report(journal):
    path, lines = journal
    ok = run(str(path))
    assert ok.exit_code == 0 and "journal intact: 8 records" in ok.stdout
    doc = json.loads(CliRunner().invoke(app, ["--json", "journal", "verify", str(path)]).stdout)
    assert doc["ok"] is True and doc["records"] == 8 and doc["problem"] is None
    del lines[2]
    path.write_bytes(b"".join(lines))
    bad = run(str(path))
    assert bad.exit_code == 1 and f"{path}:3: deleted:" in bad.stdout and "line 3" in bad.stderr
    doc = json.loads(CliRunner().invoke(app, ["--json", "journal", "verify", str(path)]).stdout)
    assert doc["exit_code"] == 1 and doc["problem"]["kind"] == "deleted" and doc["problem"]["line"] == 3
    missing = run(str(path.with_name("nope.jsonl")))
    assert missing.exit_code == 3 and "cannot read" in missing.stderr
    assert CliRunner().invoke(app, ["journal", "verify"]).exit_code == 2


def test_journal_and_audit_are_different_commands():
    out = CliRunner().invoke(app, ["--help"]).stdout
    assert "journal" in out and "audit" in out
    help_text = CliRunner().invoke(app, ["journal", "--help"]).stdout
    assert "request journal" in help_text and "serve --journal" in help_text


def test_a_rotation_that_cannot_create_the_new_file_is_retried_without_shifting_again(tmp_path, monkeypatch):
    path = tmp_path / "j.jsonl"
    w = JournalWriter(path, max_bytes=600).open()
    real_open = os.open
    blocked = [False]

    def open_(name, *args, **kwargs):
        if blocked[0] and str(name) == str(path):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_open(name, *args, **kwargs)

    monkeypatch.setattr(os, "open", open_)
    while not (tmp_path / "j.jsonl.1").exists() or path.exists():
        blocked[0] = (tmp_path / "j.jsonl.1").exists() or w.seq >= 2
        w.append({"kind": "request", "pad": "x" * 100})
        if not w.healthy:
            break
    assert not w.healthy and not path.exists()
    assert not w.probe() and not w.probe()  # tried again: nothing shifts further
    assert sorted(p.name for p in tmp_path.iterdir()) == ["j.jsonl.1", "j.jsonl.head"]
    blocked[0] = False
    assert w.probe() and w.append({"kind": "request"})
    w.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["j.jsonl", "j.jsonl.1", "j.jsonl.head"]
    assert verify_journal([path]).ok


def test_lines_cut_from_the_end_show_against_the_head_file(journal):
    path, lines = journal
    head = path.with_name("journal.jsonl.head")
    assert json.loads(head.read_bytes()) == {"seq": 8, "hash": json.loads(lines[-1])["hash"]}
    assert problem(path, lines[:-1]) == ("deleted", 8)
    assert "record seq 8 is missing at the end" in verify_journal([path]).problem.message
    assert problem(path, lines[:5]) == ("deleted", 6)
    with pytest.raises(CouldNotRun, match="records were removed"):
        JournalWriter(path).open()  # a restart does not paper over the cut
    lines[-1] = resealed(lines[-1], status=500)  # the last record rewritten, hash and all
    assert problem(path, lines) == ("edited", 8)
    head.unlink()  # a copy without its head: the cut end cannot be seen
    assert problem(path, lines[:-1]) is None
