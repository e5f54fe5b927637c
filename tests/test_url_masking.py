"""Passwords inside URLs never reach output: `config show` (text and --json), dify-register errors, one helper."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from gptoss_cli.cli import app
from gptoss_cli.redact import mask, mask_url, public_url, scrub_userinfo
from tests.ports import free_port

runner = CliRunner()
PW = "Pa55wOrdInUrl"
URL_KEYS = {
    "GPTOSS_DIFY_URL": "http://admin:{pw}@dify.example:8080/console",
    "GPTOSS_HF_ENDPOINT": "https://bob:{pw}@mirror.example/hf",
    "GPTOSS_FETCH_GIT_MIRROR": "https://ci:{pw}@git.example/",
    "GPTOSS_AUDIT_OSV_URL": "http://u:{pw}@osv.example/v1/query",
    "GPTOSS_SERVE_CACHE_URL": "redis://:{pw}@cache.example:6379/0",
    "GPTOSS_SERVE_UPSTREAM_URL": "http://{pw}@vllm.example:8001/v1",
}


@pytest.mark.parametrize("args", [["config", "show", "--json"], ["config", "show"]])
def test_config_show_masks_url_credentials(args: list[str]) -> None:
    env = {name: value.format(pw=PW) for name, value in URL_KEYS.items()}
    result = runner.invoke(app, args, env={**env, "COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    assert PW not in result.stdout and PW not in result.stderr
    if "--json" in args:
        rows = {r["key"]: r["value"] for r in json.loads(result.stdout)["settings"]}
        assert rows["dify.url"] == "http://***@dify.example:8080/console"
        assert rows["fetch.endpoint"] == "https://***@mirror.example/hf"
        assert rows["serve.cache_url"] == "redis://***@cache.example:6379/0"
        assert rows["serve.upstream_url"] == "http://***@vllm.example:8001/v1"
    else:
        assert "***@git.example" in result.stdout and "***@osv.example" in result.stdout


def test_dify_register_unreachable_does_not_print_the_url_password() -> None:
    url = f"http://admin:{PW}@127.0.0.1:{free_port()}"
    result = runner.invoke(app, ["dify-register", "--dify-url", url, "--endpoint-url", "http://127.0.0.1:9/v1",
                                 "--email", "a@b.c", "--password-env", "DIFY_PW", "--no-preflight"],
                           env={"DIFY_PW": "x" * 12, "GPTOSS_DIFY_TIMEOUT": "2"})
    assert result.exit_code == 3, result.output
    assert "cannot reach Dify" in result.stderr and "***@127.0.0.1" in result.stderr
    assert PW not in result.stderr and PW not in result.stdout


def test_one_helper_masks_every_shape() -> None:
    assert mask_url(f"https://u:{PW}@h.example:8443/p?token={PW}#x") == "https://***@h.example:8443/p"
    assert mask_url(f"http://u:p@ss{PW}@h/") == "http://***@h/"  # an unencoded @ in the password
    assert mask_url("http://127.0.0.1:99999/x") == "http://127.0.0.1:99999/x"  # bad port: no exception
    assert mask_url("git@github.com:openai/gpt-oss.git") == "git@github.com:openai/gpt-oss.git"
    assert public_url(f"https://u:{PW}@h.example/p/?q=1") == "https://h.example/p"
    assert public_url("http://127.0.0.1:99999") == "http://127.0.0.1:99999"
    assert PW not in scrub_userinfo(f"fatal: http://u:{PW}@h/x and https://{PW}@g/y")
    assert mask([f"--x=http://a:{PW}@h"]) == ["--x=http://***@h"]
    assert mask(8000) == 8000 and mask("plain") == "plain"


def test_every_layer_uses_the_one_helper() -> None:
    from gptoss_cli import lockfile, redact
    from gptoss_cli.serve.generation import cache
    from gptoss_cli.serve.engines.upstream import backend as upstream

    assert lockfile.public_url is redact.public_url and lockfile.scrub_userinfo is redact.scrub_userinfo
    assert cache.redact_url is redact.mask_url and upstream.safe_url is redact.public_url
