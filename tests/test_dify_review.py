"""Review findings for dify-register: behaviours an independent fake Dify built from reference/dify-api.md relies on."""

from __future__ import annotations

import json
import httpx
import pytest

from gptoss_cli.config import Secret
from gptoss_cli.dify import DifyClient, DifyLoginError
from tests.dify_fake import FakeDify, Reply, StubOpenAI
from tests.test_dify_register import run, stub  # noqa: F401 - stub is a fixture


def _failing_route(fake: FakeDify, monkeypatch: pytest.MonkeyPatch, suffix: str, reply: Reply) -> None:
    original = fake._route

    def route(r):  # noqa: ANN001, ANN202
        if r.path.endswith(suffix):
            raise reply
        return original(r)

    monkeypatch.setattr(fake, "_route", route)


# §2.6: GET default-model creates a record when none exists, so a dry run must not send it
@pytest.mark.parametrize("version", ["0.15.3", "1.13.3"])
def test_dry_run_set_default_sends_no_default_model_request(version: str, stub: StubOpenAI) -> None:
    with FakeDify(version=version) as fake:
        result = run(fake, stub.url, dry_run=True, set_default=True)
        assert fake.defaults == [] and fake.mutations == 0
        assert not any(r.path.endswith("/default-model") for r in fake.requests)
        planned = [s for s in result.plan if s.path.startswith("/console/api/workspaces/current/default-model")]
        assert [s.method for s in planned] == ["GET", "POST", "GET"] and not any(s.sent for s in planned)


# issue 6 §4: "api_key if the server has one"
@pytest.mark.parametrize("version", ["0.15.3", "1.13.3"])
def test_no_api_key_field_without_a_server_key(version: str, stub: StubOpenAI) -> None:
    with FakeDify(version=version) as fake:
        run(fake, stub.url)
        run(fake, stub.url)
        writes = [r for r in fake.requests if isinstance(r.body, dict) and "credentials" in r.body]
        assert len(writes) == 2 and all("api_key" not in w.body["credentials"] for w in writes)


# §1.3/§6: once the access cookie has expired it is not sent, and Dify answers "Invalid Authorization token."
@pytest.mark.parametrize("version", ["1.9.1", "1.13.3"])
def test_refresh_on_any_unauthorized_answer(version: str, stub: StubOpenAI) -> None:
    with FakeDify(version=version, expire_tokens_after=1, expired_message="Invalid Authorization token.") as fake:
        assert run(fake, stub.url).action == "created"
        assert fake.login_attempts == 1
        assert any(r.path.endswith("/refresh-token") for r in fake.requests)


# a hand-built console may answer without Content-Type; X-Version is what identifies Dify (§1.1)
def test_detect_does_not_need_a_json_content_type() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=b'{"step": "finished"}', headers={"X-Version": "1.13.3"})

    with httpx.Client(transport=httpx.MockTransport(handler)) as http:
        state = DifyClient(http, "http://d").detect()
    assert state.version == "1.13.3" and state.step == "finished"


def test_version_with_a_suffix_is_read_leniently() -> None:
    from gptoss_cli.dify import profile_for

    assert profile_for("1.11.1-fix.1").name == "1.11.0-1.11.1"
    assert profile_for("1.13.3 (build abc)").name == "1.11.2+"


# the validate-only endpoint (§2.4) is an extra in a dry run: its absence or a 400 must not abort the plan
def test_dry_run_survives_missing_validate_endpoint(stub: StubOpenAI, monkeypatch: pytest.MonkeyPatch) -> None:
    with FakeDify() as fake:
        _failing_route(fake, monkeypatch, "/credentials/validate", Reply(404, {"message": "Not Found"}))
        result = run(fake, stub.url, dry_run=True)
        assert result.action == "would-create" and result.validation and "404" in result.validation
        assert fake.mutations == 0


# §2.2 lists two ways to see installed plugins; fall back to GET list when installations/ids is not offered
def test_plugin_check_falls_back_to_list(stub: StubOpenAI, monkeypatch: pytest.MonkeyPatch) -> None:
    with FakeDify(version="1.5.0") as fake:
        original = fake._route

        def route(r):  # noqa: ANN001, ANN202
            p = r.path[len("/console/api"):]
            if p.endswith("/plugin/list/installations/ids"):
                raise Reply(404, {"message": "Not Found"})
            if p == "/workspaces/current/plugin/list" and r.method == "GET":
                fake._authenticate(r)
                return {"plugins": [{"plugin_id": "langgenius/openai_api_compatible",
                                     "plugin_unique_identifier": "langgenius/openai_api_compatible:0.0.20@x"}],
                        "total": 1}
            return original(r)

        monkeypatch.setattr(fake, "_route", route)
        assert run(fake, stub.url).action == "created"
        assert any(r.path.endswith("/plugin/list") and r.query.get("page_size") == "256" for r in fake.requests)


# §1.2: a refused login is a 400/401 whatever its code; on 1.11.0/1 it still gets its one plain-text try
def test_login_refusal_without_code_uses_the_documented_second_try() -> None:
    bodies: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/setup"):
            return httpx.Response(200, json={"step": "finished"}, headers={"X-Version": "1.11.1"})
        bodies.append(json.loads(request.content)["password"])
        return httpx.Response(401, json={"message": "Invalid email or password."})

    with httpx.Client(transport=httpx.MockTransport(handler)) as http:
        client = DifyClient(http, "http://d")
        client.detect()
        with pytest.raises(DifyLoginError) as info:
            client.login("a@b.c", Secret("Passw0rd-x"))
    assert len(bodies) == 2 and bodies[1] == "Passw0rd-x" and "Passw0rd-x" not in info.value.one_line()


# "CSRF missing → handled": a login that set no csrf_token cookie gets one refresh (which rotates all three)
def test_csrf_cookie_missing_at_login_is_refreshed_once(stub: StubOpenAI) -> None:
    with FakeDify(version="1.13.3", csrf_on_login=False) as fake:
        assert run(fake, stub.url).action == "created"
        assert fake.login_attempts == 1
        assert sum(r.path.endswith("/refresh-token") for r in fake.requests) == 1


# secrets never in stdout/stderr, --json is exactly one document: every profile, both auth modes, an error path
@pytest.mark.parametrize("version", ["0.15.3", "1.5.0", "1.9.1", "1.11.1", "1.13.3"])
def test_cli_secrets_and_single_json_document(version: str) -> None:
    import base64

    from typer.testing import CliRunner

    from gptoss_cli.cli import app

    key, admin = "sk-review-server-key-1", "review-admin-key-2"
    runner = CliRunner()
    with StubOpenAI(api_key=key) as keyed, FakeDify(version=version, admin_api_key=admin) as fake:
        env = {"PW": fake.password, "SRV": key, "ADM": admin}
        common = ["dify-register", "--dify-url", fake.url, "--endpoint-url", keyed.url, "--json"]
        runs = [runner.invoke(app, [*common, "--email", fake.email, "--password-env", "PW",
                                    "--server-api-key-env", "SRV", "--set-default"], env=env)]
        if version != "1.5.0":  # admin key works on every profile here (1.9.2-1.10 are refused)
            runs.append(runner.invoke(app, [*common, "--admin-api-key-env", "ADM", "--workspace-id",
                                            fake.workspace_id, "--server-api-key-env", "SRV"], env=env))
        runs.append(runner.invoke(app, [*common, "--email", fake.email, "--password-env", "PW", "--dry-run",
                                        "--server-api-key-env", "SRV"], env=env))
        for r in runs:
            assert r.exit_code == 0, r.stderr
            assert json.loads(r.stdout)["model"] == "gpt-oss-20b"  # the whole of stdout is one document
        # Dify's validation fails (wrong server key, no preflight): one line, exit 3
        bad = runner.invoke(app, [*common, "--email", fake.email, "--password-env", "PW", "--no-preflight",
                                  "--server-api-key-env", "BAD"], env={**env, "BAD": "sk-wrong-key-3"})
        assert bad.exit_code == 3
        failed = json.loads(bad.stdout)  # --json: only the envelope, with the error and no result
        assert failed["ok"] is False and failed["exit_code"] == 3 and "model" not in failed
        assert failed["error"]["type"] in ("CouldNotRun", "RemoteServiceError")
        assert len([x for x in bad.stderr.splitlines() if x.startswith("gptoss: error:")]) == 1
        secrets = [fake.password, base64.b64encode(fake.password.encode()).decode(), key, admin, "sk-wrong-key-3",
                   *fake.tokens, *fake.refresh_tokens, *fake.csrf]
        for r in [*runs, bad]:
            for secret in secrets:
                assert secret not in r.stdout and secret not in r.stderr
