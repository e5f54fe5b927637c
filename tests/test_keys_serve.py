"""Named API keys in the server (scripted engine, real app): 401s, revocation mid-run without a restart, per-key
models, rpm/tpm limits (429 + Retry-After), and the key's name — never the key — in the access log and metrics."""

from __future__ import annotations

import time

import httpx
import pytest
from typer.testing import CliRunner

from gptoss_cli.cli import app as cli_app
from gptoss_cli.config import Secret
from gptoss_cli.keys import add_key
from gptoss_cli.serve.engines.scripted import ScriptedEngine
from gptoss_cli.serve.openai.app import create_app
from gptoss_cli.serve.openai.keyring import Identity
from gptoss_cli.serve.openai.quota import Quota, RateLimited
from gptoss_cli.serve.settings import ServeSettings
from tests.serve_fixtures import FINAL, USER_HI, live_server, ready_client

pytestmark = pytest.mark.timeout(120)
CHAT = "/v1/chat/completions"
ASK = {"model": "gpt-oss-20b", "messages": USER_HI}


def make_app(keys_file, lines=None, **settings):
    settings.setdefault("current_date", "2025-06-01")
    settings.setdefault("cache", False)
    engine = ScriptedEngine(script=[FINAL])
    return create_app(ServeSettings(keys_file=keys_file, **settings), engine,
                      emit_access_log=(lines.append if lines is not None else None))


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_named_keys_and_the_single_key_both_work_and_the_log_names_them(tmp_path):
    path = tmp_path / "keys.json"
    _, key = add_key(path, "dify")
    lines: list[str] = []
    single = "sk-single-key-271828"
    with ready_client(make_app(path, lines, api_key=Secret(single))) as client:
        assert client.post(CHAT, json=ASK, headers=bearer(key)).status_code == 200
        assert client.post(CHAT, json=ASK, headers=bearer(single)).status_code == 200
        bad = client.post(CHAT, json=ASK, headers=bearer(key[:-2] + "xx"))
        assert bad.status_code == 401 and bad.json()["error"]["code"] == "invalid_api_key"
        assert client.post(CHAT, json=ASK).status_code == 401
        assert client.get("/health").status_code == 200  # stays open
        metrics = client.get("/metrics").text
    chats = [line for line in lines if "route=/v1/chat/completions" in line]
    assert ["key=dify" in chats[0], "key=api-key" in chats[1], "key=-" in chats[2]] == [True, True, True]
    assert 'gptoss_key_requests_total{key="dify",status="200"} 1.0' in metrics
    assert 'gptoss_key_tokens_total{key="dify",kind="completion"}' in metrics
    for text in (*lines, metrics):
        assert key not in text and single not in text


def test_a_keys_file_without_keys_refuses_everyone(tmp_path):
    with ready_client(make_app(tmp_path / "absent.json")) as client:
        assert client.post(CHAT, json=ASK).status_code == 401
        assert client.get("/v1/models", headers=bearer("gptoss-000000000000-" + "a" * 43)).status_code == 401


def test_a_key_revoked_mid_run_gets_401_on_its_next_request_without_restart(tmp_path):
    path = tmp_path / "keys.json"
    _, key = add_key(path, "dify")
    _, other = add_key(path, "other")
    with live_server(make_app(path)) as base:
        assert httpx.post(base + CHAT, json=ASK, headers=bearer(key), timeout=30).status_code == 200
        r = CliRunner().invoke(cli_app, ["keys", "revoke", "dify", "--keys-file", str(path)])
        assert r.exit_code == 0, r.output
        deadline = time.monotonic() + 5
        while httpx.post(base + CHAT, json=ASK, headers=bearer(key), timeout=30).status_code == 200:
            assert time.monotonic() < deadline, "the revoked key still works"
            time.sleep(0.1)
        assert httpx.post(base + CHAT, json=ASK, headers=bearer(key), timeout=30).status_code == 401
        assert httpx.post(base + CHAT, json=ASK, headers=bearer(other), timeout=30).status_code == 200
        r = CliRunner().invoke(cli_app, ["keys", "add", "new", "--keys-file", str(path)])
        new = r.stdout.strip()
        deadline = time.monotonic() + 5
        while httpx.get(base + "/v1/models", headers=bearer(new), timeout=30).status_code != 200:
            assert time.monotonic() < deadline, "a key added mid-run is not picked up"
            time.sleep(0.1)


def test_a_key_limited_to_some_models_sees_and_uses_only_those(tmp_path):
    path = tmp_path / "keys.json"
    _, narrow = add_key(path, "narrow", models=["gpt-oss"])
    _, wide = add_key(path, "wide")
    with ready_client(make_app(path, aliases=("gpt-oss",))) as client:
        r = client.post(CHAT, json=ASK, headers=bearer(narrow))
        assert r.status_code == 404
        assert r.json()["error"]["code"] == "model_not_found" and r.json()["error"]["param"] == "model"
        assert client.post(CHAT, json={**ASK, "model": "gpt-oss"}, headers=bearer(narrow)).status_code == 200
        assert client.post(CHAT, json={"messages": USER_HI}, headers=bearer(narrow)).status_code == 404
        assert [m["id"] for m in client.get("/v1/models", headers=bearer(narrow)).json()["data"]] == ["gpt-oss"]
        assert client.get("/v1/models/gpt-oss-20b", headers=bearer(narrow)).status_code == 404
        assert client.post(CHAT, json=ASK, headers=bearer(wide)).status_code == 200
        assert len(client.get("/v1/models", headers=bearer(wide)).json()["data"]) == 2


def test_requests_per_minute_is_a_429_with_retry_after_for_that_key_only(tmp_path):
    path = tmp_path / "keys.json"
    _, limited = add_key(path, "limited", rpm=2)
    _, free = add_key(path, "free")
    with ready_client(make_app(path)) as client:
        assert [client.post(CHAT, json=ASK, headers=bearer(limited)).status_code for _ in range(2)] == [200, 200]
        r = client.post(CHAT, json={**ASK, "stream": True}, headers=bearer(limited))
        assert r.status_code == 429
        assert r.json()["error"]["code"] == "rate_limit_exceeded" and "requests per minute" in r.json()["error"][
            "message"]
        assert 1 <= int(r.headers["retry-after"]) <= 60
        assert client.post(CHAT, json=ASK, headers=bearer(free)).status_code == 200
        assert 'gptoss_key_rate_limited_total{key="limited",limit="requests"} 1.0' in client.get("/metrics").text


def test_tokens_per_minute_counts_each_requests_usage_at_its_end(tmp_path):
    path = tmp_path / "keys.json"
    _, key = add_key(path, "t", tpm=100)
    with ready_client(make_app(path)) as client:
        first = client.post(CHAT, json=ASK, headers=bearer(key))
        assert first.status_code == 200 and first.json()["usage"]["total_tokens"] > 100
        r = client.post(CHAT, json=ASK, headers=bearer(key))
        assert r.status_code == 429 and "tokens per minute" in r.json()["error"]["message"]
        assert 1 <= int(r.headers["retry-after"]) <= 60


def test_the_window_slides():
    now = [1000.0]
    quota = Quota(clock=lambda: now[0])
    who = Identity("k", rpm=2, tpm=50)
    quota.admit(who)
    now[0] += 30
    quota.admit(who)
    with pytest.raises(RateLimited) as err:
        quota.admit(who)
    assert err.value.headers["Retry-After"] == "30"
    now[0] += 30.5  # the first request has left the window
    quota.admit(who)

    class Rec:
        key_name, prompt_tokens, completion_tokens, status = "k", 40, 20, 200

    now[0] += 61
    quota.finished(Rec())  # 60 tokens spent: over 50
    now[0] += 10
    with pytest.raises(RateLimited) as err:
        quota.admit(who)
    assert err.value.headers["Retry-After"] == "50"
    now[0] += 50
    quota.admit(who)
    quota.admit(Identity("unlimited"))


def test_the_ready_curl_asks_for_a_named_key_without_showing_one(tmp_path):
    from gptoss_cli.serve.runtime import example_curl

    curl = example_curl(ServeSettings(keys_file=tmp_path / "keys.json"), "http://127.0.0.1:8000")
    assert "'Authorization: Bearer <a key from gptoss keys add>'" in curl
    assert "Authorization" not in example_curl(ServeSettings(), "http://127.0.0.1:8000")


def test_a_key_with_its_own_policy_gets_it_and_other_keys_get_the_servers(tmp_path):
    """``gptoss keys add --policy FILE``: that key's requests follow its policy file instead of ``--policy``; a key
    without one follows the server's; the file is checked when the key is added (exit 2, with the line)."""
    strict = tmp_path / "strict.toml"
    strict.write_text('version = 1\n[[rules]]\nid = "no-secrets"\non = "input"\naction = "block"\n'
                      'keywords = ["secret"]\n', encoding="utf-8")
    lax = tmp_path / "lax.toml"
    lax.write_text('version = 1\n[[rules]]\nid = "nothing"\non = "input"\naction = "block"\n'
                   'keywords = ["zzz-never"]\n', encoding="utf-8")
    broken = tmp_path / "broken.toml"
    broken.write_text('version = 1\n[[rules]]\nid = "x"\non = "input"\naction = "explode"\nkeywords = ["a"]\n',
                      encoding="utf-8")
    path = tmp_path / "keys.json"
    runner = CliRunner()
    refused = runner.invoke(cli_app, ["keys", "add", "bad", "--keys-file", str(path), "--policy", str(broken)])
    assert refused.exit_code == 2 and "broken.toml" in refused.stderr
    added = runner.invoke(cli_app, ["keys", "add", "ward", "--keys-file", str(path), "--policy", str(strict)])
    assert added.exit_code == 0, added.stderr
    ward = added.stdout.strip()
    _, other = add_key(path, "reception")
    ask = {**ASK, "messages": [{"role": "user", "content": "tell me the secret"}]}
    with ready_client(make_app(path, policy=str(lax))) as client:
        blocked = client.post(CHAT, json=ask, headers=bearer(ward))
        assert blocked.status_code == 400 and blocked.json()["error"]["code"] == "policy_violation"
        assert "no-secrets" in blocked.json()["error"]["message"]
        assert client.post(CHAT, json=ask, headers=bearer(other)).status_code == 200  # the server's lax policy
        strict.write_text("this is not toml [", encoding="utf-8")  # damaged later: the loaded policy stays ...
        assert client.post(CHAT, json=ask, headers=bearer(ward)).status_code == 400
    fresh = tmp_path / "keys2.json"
    entry, key = add_key(fresh, "gone", policy=str(tmp_path / "missing.toml"))  # ... and one that never loads
    with ready_client(make_app(fresh)) as client:
        r = client.post(CHAT, json=ASK, headers=bearer(key))
        assert r.status_code == 500 and r.json()["error"]["code"] == "policy_unavailable"  # fail closed
