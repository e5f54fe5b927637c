"""Issue 16 items 3-6 against fakes that behave like real Dify 0.15.3 and 1.x (reference/dify-api.md §9).

3. the role check uses the method each version accepts; 4. ``--unregister`` does not leave the workspace default
naming the removed model (or says it must); 5. the Docker/loopback hint only when Dify could not connect;
6. ``--dry-run`` exits with the real run's code.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from gptoss_cli.cli import app
from gptoss_cli.config import Secret
from gptoss_cli.dify import CredentialsRejectedError, DifyClient, DifyPermissionError
from tests.dify_fake import OTHER_PROVIDER, FakeDify, Reply, StubOpenAI
from tests.test_dify_register import run, stub  # noqa: F401 - stub is a fixture

runner = CliRunner()
KEY = "sk-versions-server-key-7"


def cli(fake: FakeDify, *args: str, env: dict[str, str] | None = None) -> Any:
    argv = ["dify-register", "--dify-url", fake.url, "--email", fake.email, "--password-env", "PW", *args]
    return runner.invoke(app, argv, env={"PW": fake.password, **(env or {})})


def workspace_calls(fake: FakeDify) -> list[tuple[str, int]]:
    return [(r.method, r.status) for r in fake.requests if r.path == "/console/api/workspaces/current"]


# -- item 3: role check ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("version", "method"), [("0.15.3", "GET"), ("1.5.0", "POST"), ("1.13.3", "POST")])
def test_role_check_uses_the_method_the_version_accepts(version: str, method: str, stub: StubOpenAI) -> None:
    with FakeDify(version=version) as fake:
        run(fake, stub.url)
        assert workspace_calls(fake) == [(method, 200)]


@pytest.mark.parametrize("version", ["0.15.3", "1.13.3"])
def test_a_normal_member_is_stopped_by_the_role_check_on_every_version(version: str, stub: StubOpenAI) -> None:
    with FakeDify(version=version, role="normal") as fake:
        with pytest.raises(DifyPermissionError, match="the account's role in workspace .* is 'normal'"):
            run(fake, stub.url)
        assert fake.mutations == 0 and fake.validation_calls == []


def test_role_check_tries_the_other_method_on_405(stub: StubOpenAI, monkeypatch: pytest.MonkeyPatch) -> None:
    with FakeDify(version="1.13.3", role="normal") as fake:
        original = fake._route

        def get_only(r):  # noqa: ANN001, ANN202 - a 1.x build that kept 0.15's GET
            if r.path == "/console/api/workspaces/current" and r.method == "POST":
                raise Reply(405, {"code": "method_not_allowed", "message": "The method is not allowed."})
            if r.path == "/console/api/workspaces/current":
                fake._authenticate(r)
                return {"id": fake.workspace_id, "name": "W", "role": r.headers.get("_role")}
            return original(r)

        monkeypatch.setattr(fake, "_route", get_only)
        with pytest.raises(DifyPermissionError, match="'normal'"):
            run(fake, stub.url)
        assert workspace_calls(fake) == [("POST", 405), ("GET", 200)]


# -- item 4: unregister and the workspace default ------------------------------------------------------------------
@pytest.mark.parametrize("version", ["0.15.3", "1.13.3"])
def test_the_fakes_keep_a_default_naming_a_deleted_model_like_real_dify(version: str, stub: StubOpenAI) -> None:
    with FakeDify(version=version) as fake:
        run(fake, stub.url, set_default=True)
        with httpx.Client(trust_env=False, timeout=5) as http:
            c = DifyClient(http, fake.url)
            c.detect()
            c.login(fake.email, Secret(fake.password))
            c.call("DELETE", f"/workspaces/current/model-providers/{fake.provider}/models",
                   json={"model": "gpt-oss-20b", "model_type": "llm"}, changes_state=True)
            got = c.call("GET", "/workspaces/current/default-model", params={"model_type": "llm"})
        assert got["data"]["model"] == "gpt-oss-20b" and fake.records == {}


@pytest.mark.parametrize("version", ["0.15.3", "1.13.3"])
def test_unregister_moves_the_default_it_would_leave_dangling(version: str, stub: StubOpenAI) -> None:
    with FakeDify(version=version) as fake:
        assert run(fake, stub.url, set_default=True).default_state == "set"
        gone = run(fake, None, unregister=True)
        assert gone.action == "removed" and gone.default_state == "moved"
        assert gone.default_model == f"{OTHER_PROVIDER}/llama3"  # the model Dify itself would pick
        (record,) = [d for d in fake.defaults if d["model_type"] == "text-generation"]
        assert (record["provider"], record["model"]) == (OTHER_PROVIDER, "llama3")


def test_unregister_says_so_when_dify_cannot_unset_the_default(stub: StubOpenAI) -> None:
    with FakeDify(version="1.13.3", other_models=()) as fake:
        cli(fake, "--endpoint-url", stub.url, "--set-default")
        result = cli(fake, "--unregister", "--json")
        assert result.exit_code == 0, result.stderr
        doc = json.loads(result.stdout)
        assert doc["action"] == "removed" and doc["default_state"] == "dangling"
        lines = [x for x in result.stderr.splitlines() if "default LLM" in x]
        assert len(lines) == 1 and "gptoss: warning:" in lines[0] and "no way to unset" in lines[0]


def test_unregister_leaves_another_models_default_alone(stub: StubOpenAI) -> None:
    with FakeDify(version="1.13.3") as fake:
        run(fake, stub.url)
        gone = run(fake, None, unregister=True)
        assert gone.default_state == "unaffected" and gone.default_model is None
        before = fake.mutations
        planned = run(fake, None, unregister=True, dry_run=True)
        assert planned.default_state == "would-check" and fake.mutations == before
        assert not any(r.path.endswith("/default-model") and r.method == "POST" for r in fake.requests)


# -- item 5: the Docker / loopback hint -----------------------------------------------------------------------------
def test_no_docker_hint_when_the_failure_is_not_about_reaching_the_endpoint(stub: StubOpenAI) -> None:
    with StubOpenAI(api_key=KEY) as keyed, FakeDify() as fake:
        with pytest.raises(CredentialsRejectedError) as info:
            run(fake, keyed.url, preflight=False)  # Dify reaches it; it answers 401
        line = info.value.one_line()
        assert "--server-api-key-env" in line and "host.docker.internal" not in line


def test_docker_hint_when_dify_cannot_connect_to_a_loopback_endpoint() -> None:
    with StubOpenAI() as gone:
        dead = gone.url
    with FakeDify(version="0.15.3") as fake:
        result = cli(fake, "--endpoint-url", dead)
        assert result.exit_code == 3
        (error,) = [x for x in result.stderr.splitlines() if x.startswith("gptoss: error:")]
        assert "host.docker.internal" in error and "--host 0.0.0.0" in error
        assert sum("host.docker.internal" in x for x in result.stderr.splitlines()) == 1  # said once, not twice


# -- item 6: dry-run exit codes -------------------------------------------------------------------------------------
@pytest.mark.parametrize("version", ["0.15.3", "1.13.3"])
def test_dry_run_exits_3_when_difys_check_would_fail(version: str) -> None:
    with StubOpenAI(api_key=KEY) as keyed, FakeDify(version=version) as fake:
        real = cli(fake, "--endpoint-url", keyed.url, "--no-preflight")
        dry = cli(fake, "--endpoint-url", keyed.url, "--no-preflight", "--dry-run")
        assert real.exit_code == dry.exit_code == 3
        assert "HTTP plan (dry run" in dry.stdout and "/credentials/validate" in dry.stdout
        (error,) = [x for x in dry.stderr.splitlines() if x.startswith("gptoss: error:")]
        assert "would fail" in error and "--server-api-key-env" in error
        as_json = cli(fake, "--endpoint-url", keyed.url, "--no-preflight", "--dry-run", "--json")
        assert as_json.exit_code == 3 and "401" in json.loads(as_json.stdout)["validation"]
        assert fake.mutations == 0 and fake.creds == {} and fake.records == {}
        ok = cli(fake, "--endpoint-url", keyed.url, "--dry-run", "--server-api-key-env", "K", env={"K": KEY})
        assert ok.exit_code == 0, ok.stderr
        assert KEY not in ok.stdout + ok.stderr + dry.stdout + dry.stderr


# -- item 2, from the command line ----------------------------------------------------------------------------------
@pytest.mark.parametrize(("version", "how"), [("0.15.3", "hidden-by-server"), ("1.13.3", "hidden-by-dify")])
def test_hide_reasoning_says_what_it_changes_and_how_to_spend_fewer_tokens(version: str, how: str,
                                                                            stub: StubOpenAI) -> None:
    with FakeDify(version=version) as fake:
        human = cli(fake, "--endpoint-url", stub.url, "--hide-reasoning")
        assert human.exit_code == 0, human.stderr
        assert "still reasons" in human.stdout and "--reasoning-effort low" in human.stdout
        assert "does not accept" not in human.stderr  # 0.15's missing switch is handled, not warned about
        doc = json.loads(cli(fake, "--endpoint-url", stub.url, "--hide-reasoning", "--json").stdout)
        assert doc["reasoning"] == how and "--reasoning-effort low" in doc["reasoning_note"]
        assert doc["endpoint_url"].endswith("/no-reasoning/v1" if how == "hidden-by-server" else "/v1")


def test_hide_reasoning_without_the_mount_is_exit_3_not_a_silent_no_op() -> None:
    with StubOpenAI(mount=False) as other, FakeDify(version="0.15.3") as fake:
        result = cli(fake, "--endpoint-url", other.url, "--hide-reasoning")
        assert result.exit_code == 3 and "/no-reasoning" in result.stderr and "gptoss serve" in result.stderr
        assert fake.mutations == 0


def test_unregister_still_succeeds_when_the_default_cannot_be_checked(stub: StubOpenAI,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    with FakeDify(version="1.13.3") as fake:
        run(fake, stub.url, set_default=True)
        original = fake._route

        def no_listing(r):  # noqa: ANN001, ANN202
            if r.path.endswith("/models/model-types/llm"):
                raise Reply(404, {"code": "not_found", "message": "Not Found"})
            return original(r)

        monkeypatch.setattr(fake, "_route", no_listing)
        gone = run(fake, None, unregister=True)
        assert gone.action == "removed" and gone.default_state == "unknown" and fake.records == {}
        assert any("could not check the workspace default" in w for w in gone.warnings)
