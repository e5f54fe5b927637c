"""Named API keys: the keys file (add shows the key once, only its hash is stored, list, revoke) and the CLI."""

from __future__ import annotations

import hashlib
import json
import os
import stat

import pytest
from typer.testing import CliRunner

from gptoss_cli.cli import app
from gptoss_cli.errors import CouldNotRun, UsageError
from gptoss_cli.keys import add_key, parse_key, read_keys, revoke_key
from gptoss_cli.serve.openai.keyring import KeyRing


def _run(*args: str):
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def test_add_stores_only_the_hash_and_finds_the_key_again(tmp_path):
    path = tmp_path / "keys.json"
    entry, key = add_key(path, "dify", models=["gpt-oss-20b"], rpm=5, tpm=1000, policy="strict")
    text = path.read_text()
    assert key.startswith("gptoss-") and len(key) >= 7 + 12 + 1 + 43
    assert key not in text and key.split("-", 2)[2] not in text
    assert hashlib.sha256(key.encode()).hexdigest() in text
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    keys = read_keys(path)
    assert keys.find(key) == entry and entry.models == ("gpt-oss-20b",) and entry.rpm == 5 and entry.tpm == 1000
    assert keys.find(key[:-1] + ("A" if key[-1] != "A" else "B")) is None
    assert keys.find("gptoss-" + entry.id + "-" + "x" * 43) is None  # the right id is not enough
    assert parse_key("sk-something") is None


def test_names_are_unique_among_active_keys_and_checked(tmp_path):
    path = tmp_path / "keys.json"
    add_key(path, "dify")
    with pytest.raises(UsageError, match="exists already"):
        add_key(path, "dify")
    for bad in ("", "a b", "api-key", "-x", "x" * 65):
        with pytest.raises(UsageError):
            add_key(path, bad)
    revoke_key(path, "dify")
    _, again = add_key(path, "dify")  # a new key may take a revoked name
    keys = read_keys(path)
    assert [e.name for e in keys.entries] == ["dify", "dify"] and len(keys.active()) == 1
    assert keys.find(again) is not None
    with pytest.raises(UsageError, match="no active key"):
        revoke_key(path, "nobody")


def test_a_damaged_keys_file_is_reported_without_its_content(tmp_path):
    path = tmp_path / "keys.json"
    path.write_text('{"keys": [{"name": "x"}]}')
    with pytest.raises(CouldNotRun, match="damaged"):
        read_keys(path)
    assert read_keys(tmp_path / "absent.json").entries == ()


def test_keyring_accepts_the_single_key_and_named_keys_by_name(tmp_path):
    from gptoss_cli.config import Secret

    path = tmp_path / "keys.json"
    _, key = add_key(path, "dify", rpm=3, policy="p1")
    ring = KeyRing(path, Secret("sk-single-0123456789"))
    assert ring.authenticate(key).name == "dify" and ring.authenticate(key).policy == "p1"
    assert ring.authenticate(key.encode()).rpm == 3
    assert ring.authenticate("sk-single-0123456789").name == "api-key"
    assert ring.authenticate("sk-single-012345678") is None and ring.authenticate("") is None
    assert KeyRing(None, None).authenticate("") is None


def test_keyring_rereads_the_file_when_it_changes_and_fails_closed_when_damaged(tmp_path):
    now = [0.0]
    path = tmp_path / "keys.json"
    _, key = add_key(path, "dify")
    ring = KeyRing(path, clock=lambda: now[0])
    assert ring.authenticate(key) is not None
    revoke_key(path, "dify")
    assert ring.authenticate(key) is not None  # looked at no more than once a second
    now[0] += 1.0
    assert ring.authenticate(key) is None
    _, other = add_key(path, "other")
    now[0] += 1.0
    assert ring.authenticate(other).name == "other"
    path.write_text("{not json")
    now[0] += 1.0
    assert ring.authenticate(other) is None and "damaged" in (ring.error or "")


def test_cli_add_prints_the_key_alone_once_and_list_never_shows_it(tmp_path):
    path = tmp_path / "k.json"
    r = _run("keys", "add", "dify", "--model", "gpt-oss-20b", "--rpm", "10", "--keys-file", str(path))
    assert r.exit_code == 0, r.output
    key = r.stdout.strip()
    assert read_keys(path).find(key) is not None and "\n" not in key
    assert "shown only now" in r.stderr
    listed = _run("--json", "keys", "list", "--keys-file", str(path))
    assert listed.exit_code == 0 and key not in listed.stdout
    doc = json.loads(listed.stdout)
    (row,) = doc["keys"]
    assert row["name"] == "dify" and row["models"] == ["gpt-oss-20b"] and row["rpm"] == 10 and "sha256" not in row
    human = _run("keys", "list", "--keys-file", str(path))
    assert "dify" in human.stdout and key not in human.stdout
    assert _run("keys", "revoke", "dify", "--keys-file", str(path)).exit_code == 0
    assert json.loads(_run("--json", "keys", "list", "--keys-file", str(path)).stdout)["keys"] == []
    (revoked,) = json.loads(_run("--json", "keys", "list", "--all", "--keys-file", str(path)).stdout)["keys"]
    assert revoked["revoked"]


def test_cli_defaults_to_the_home_keys_file_and_reports_bad_input(tmp_path, monkeypatch):
    monkeypatch.setenv("GPTOSS_HOME", str(tmp_path / "home"))
    r = _run("--json", "keys", "add", "ci")
    assert r.exit_code == 0
    doc = json.loads(r.stdout)
    assert doc["keys_file"] == str(tmp_path / "home" / "keys.json") and doc["key"].startswith("gptoss-")
    dup = _run("keys", "add", "ci")
    assert dup.exit_code == 2 and "exists already" in dup.stderr and doc["key"] not in dup.output
    assert _run("keys", "revoke", "nobody").exit_code == 2
    assert _run("keys", "add", "x", "--rpm", "0").exit_code == 2
    r = _run("--json", "keys", "add", "many", "--models", "a,b", "--model", "c", "--tokens-per-minute", "9")
    assert json.loads(r.stdout)["models"] == ["a", "b", "c"] and json.loads(r.stdout)["tpm"] == 9
