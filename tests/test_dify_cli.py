"""`gptoss dify-register` end to end through the Typer app: options, password sources, output, exit codes, secrets."""

from __future__ import annotations

import base64
import json
from typing import Iterator

import pytest
from typer.testing import CliRunner

from gptoss_cli.cli import app
from tests.dify_fake import FakeDify, StubOpenAI

runner = CliRunner()
SERVER_KEY = "sk-cli-server-key-456"


@pytest.fixture
def stub() -> Iterator[StubOpenAI]:
    with StubOpenAI() as s:
        yield s


@pytest.fixture
def fake() -> Iterator[FakeDify]:
    with FakeDify(version="1.13.3") as f:
        yield f


def secrets_of(fake: FakeDify, *extra: str) -> list[str]:
    b64 = base64.b64encode(fake.password.encode()).decode()
    return [fake.password, b64, *fake.tokens, *fake.refresh_tokens, *fake.csrf, *extra]


def assert_no_secret(result, secrets: list[str]) -> None:  # noqa: ANN001
    for secret in secrets:
        assert secret not in result.stdout, "secret leaked to stdout"
        assert secret not in result.stderr, "secret leaked to stderr"


def invoke(fake: FakeDify, stub_url: str | None, *args: str, env: dict | None = None, input: str | None = None):
    argv = ["dify-register", "--dify-url", fake.url, "--email", fake.email]
    if stub_url:
        argv += ["--endpoint-url", stub_url]
    full_env = {"DIFY_PW": fake.password, **(env or {})}
    return runner.invoke(app, [*argv, *args], env=full_env, input=input, catch_exceptions=False)


def test_create_update_unregister_json(fake: FakeDify, stub: StubOpenAI) -> None:
    first = invoke(fake, stub.url, "--password-env", "DIFY_PW", "--json", "--set-default")
    assert first.exit_code == 0, first.stderr
    doc = json.loads(first.stdout)
    assert doc["action"] == "created" and doc["credential_name"] == "gptoss" and doc["credential_id"]
    assert doc["default_model"].endswith("/gpt-oss-20b") and doc["preflight"]["chat_ok"] is True
    assert doc["preflight"]["chat_ms"] is not None
    assert "preflight ok" in first.stderr
    assert "warning" not in first.stderr  # Dify validated the loopback endpoint itself: no Docker hint
    second = invoke(fake, stub.url, "--password-env", "DIFY_PW", "--json")
    assert json.loads(second.stdout)["action"] == "updated" and len(fake.creds) == 1
    third = runner.invoke(app, ["--json", "dify-register", "--dify-url", fake.url, "--email", fake.email,
                                "--password-env", "DIFY_PW", "--unregister"], env={"DIFY_PW": fake.password})
    assert third.exit_code == 0, third.stderr
    assert json.loads(third.stdout)["action"] == "removed" and fake.creds == {}
    for r in (first, second, third):
        assert_no_secret(r, secrets_of(fake))


def test_password_stdin_and_server_key(fake: FakeDify) -> None:
    with StubOpenAI(api_key=SERVER_KEY) as keyed:
        result = invoke(fake, keyed.url, "--password-stdin", "--server-api-key-env", "SRV", "--json",
                        env={"SRV": SERVER_KEY}, input=fake.password + "\n")
        assert result.exit_code == 0, result.stderr
        assert json.loads(result.stdout)["credentials"]["api_key"] == "********"
        assert fake.validation_calls[-1]["headers"]["Authorization"] == f"Bearer {SERVER_KEY}"
        assert_no_secret(result, secrets_of(fake, SERVER_KEY))


def test_server_key_defaults_to_gptoss_api_key(fake: FakeDify) -> None:
    with StubOpenAI(api_key=SERVER_KEY) as keyed:
        result = invoke(fake, keyed.url, "--password-env", "DIFY_PW", env={"GPTOSS_API_KEY": SERVER_KEY})
        assert result.exit_code == 0, result.stderr
        assert_no_secret(result, secrets_of(fake, SERVER_KEY))


def test_prompt_only_on_a_tty(fake: FakeDify, stub: StubOpenAI, monkeypatch: pytest.MonkeyPatch) -> None:
    no_tty = invoke(fake, stub.url)
    assert no_tty.exit_code == 2 and "--password-env" in no_tty.stderr
    assert fake.requests == []
    monkeypatch.setattr("gptoss_cli.cli.dify._stdin_is_tty", lambda: True)
    with_tty = invoke(fake, stub.url, "--json", input=fake.password + "\n")
    assert with_tty.exit_code == 0, with_tty.stderr
    assert_no_secret(with_tty, secrets_of(fake))


def test_wrong_password_one_line_exit_3(fake: FakeDify, stub: StubOpenAI) -> None:
    result = invoke(fake, stub.url, "--password-env", "BAD", env={"BAD": "Not-the-passw0rd"})
    assert result.exit_code == 3
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("gptoss: error: Dify rejected the email or password")
    assert "not retried" in lines[-1]
    assert fake.login_attempts == 1
    assert_no_secret(result, ["Not-the-passw0rd", base64.b64encode(b"Not-the-passw0rd").decode()])


def test_dry_run_prints_plan_and_changes_nothing(fake: FakeDify, stub: StubOpenAI) -> None:
    result = invoke(fake, stub.url, "--password-env", "DIFY_PW", "--dry-run", "--set-default")
    assert result.exit_code == 0, result.stderr
    assert fake.state_changing() == [] and fake.mutations == 0
    assert "would create" in result.stdout
    assert "POST /console/api/login" in result.stdout and '"password": "********"' in result.stdout
    assert "/models/credentials" in result.stdout and "[not sent: dry run]" in result.stdout
    assert "/default-model" in result.stdout
    assert_no_secret(result, secrets_of(fake))


def test_settings_from_env(fake: FakeDify, stub: StubOpenAI) -> None:
    env = {"GPTOSS_DIFY_URL": fake.url, "GPTOSS_DIFY_ENDPOINT_URL": stub.url, "GPTOSS_DIFY_EMAIL": fake.email,
           "GPTOSS_DIFY_PASSWORD_ENV": "DIFY_PW", "DIFY_PW": fake.password, "GPTOSS_DIFY_SHOW_REASONING": "false"}
    result = runner.invoke(app, ["dify-register", "--json"], env=env)
    assert result.exit_code == 0, result.stderr
    (cred,) = fake.creds.values()
    assert cred.values["agent_thought_support"] == "not_supported"


def test_bad_endpoint_url_is_usage_error(fake: FakeDify) -> None:
    result = invoke(fake, "http://127.0.0.1:9/api", "--password-env", "DIFY_PW")
    assert result.exit_code == 2 and "/v1" in result.stderr
    assert fake.requests == []


def test_missing_dify_url_and_unset_password_variable(fake: FakeDify, stub: StubOpenAI) -> None:
    no_url = runner.invoke(app, ["dify-register", "--endpoint-url", stub.url])
    assert no_url.exit_code == 2 and "--dify-url" in no_url.stderr
    unset = invoke(fake, stub.url, "--password-env", "NOT_SET_ANYWHERE")
    assert unset.exit_code == 2 and "NOT_SET_ANYWHERE" in unset.stderr


def test_plugin_missing_exit_3(stub: StubOpenAI) -> None:
    with FakeDify(version="1.9.1", plugin_installed=False, install_polls=0) as fake:
        result = invoke(fake, stub.url, "--password-env", "DIFY_PW")
        assert result.exit_code == 3 and "--install-plugin" in result.stderr
        result = invoke(fake, stub.url, "--password-env", "DIFY_PW", "--install-plugin", "--json")
        assert result.exit_code == 0, result.stderr
        assert json.loads(result.stdout)["plugin"] == "installed-now"
