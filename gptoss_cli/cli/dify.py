"""``gptoss dify-register``: register the gptoss endpoint in Dify as an OpenAI-API-compatible custom model."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console

from gptoss_cli.cli._errors import boundary
from gptoss_cli.cli._options import output_for, settings_for
from gptoss_cli.cli._progress import steps
from gptoss_cli.cli._state import remember
from gptoss_cli.config import Secret, Settings, read_env
from gptoss_cli.errors import UsageError

_ENV = "Name of an environment variable holding"
_Str = Optional[str]
_Bool = Optional[bool]

DifyUrlOpt = Annotated[_Str, typer.Option("--dify-url", help="Dify base URL, as opened in a browser.")]
EndpointOpt = Annotated[_Str, typer.Option("--endpoint-url", help="The gptoss endpoint as Dify reaches it (…/v1).")]
ModelOpt = Annotated[_Str, typer.Option("--model-name", help="Model name in Dify. (default: gpt-oss-20b)")]
EmailOpt = Annotated[_Str, typer.Option("--email", help="Dify admin/owner account email.")]
PasswordEnvOpt = Annotated[_Str, typer.Option("--password-env", help=f"{_ENV} the Dify password.")]
PasswordStdinOpt = Annotated[bool, typer.Option("--password-stdin", help="Read the Dify password from stdin.")]
AdminKeyOpt = Annotated[_Str, typer.Option(
    "--admin-api-key-env", help=f"{_ENV} Dify's ADMIN_API_KEY (needs --workspace-id).")]
WorkspaceOpt = Annotated[_Str, typer.Option("--workspace-id", help="Workspace id (admin-key mode).")]
ContextOpt = Annotated[Optional[int], typer.Option(
    "--context-size", min=1, help="Context size to register. (default: from /v1/models, else 131072)")]
MaxTokensOpt = Annotated[Optional[int], typer.Option(
    "--max-tokens", min=1, help="Max tokens to register. (default: 8192)")]
ServerKeyOpt = Annotated[_Str, typer.Option(
    "--server-api-key-env", help=f"{_ENV} the gptoss server's API key. (default: GPTOSS_API_KEY)")]
ReasoningOpt = Annotated[_Bool, typer.Option(
    "--show-reasoning/--hide-reasoning",
    help="Show gpt-oss reasoning in Dify, or hide it (any version; the model still reasons). (default: show)")]
StructuredOpt = Annotated[_Bool, typer.Option(
    "--structured-output/--no-structured-output",
    help="Register structured output (json_schema). (default: when the endpoint passes a json_schema request)")]
SetDefaultOpt = Annotated[_Bool, typer.Option("--set-default", help="Make it the workspace's default LLM.")]
InstallOpt = Annotated[_Bool, typer.Option(
    "--install-plugin", help="Install the openai_api_compatible plugin from the marketplace if missing.")]
UnregisterOpt = Annotated[bool, typer.Option("--unregister", help="Remove the model and its credentials.")]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="Print the HTTP plan; change nothing in Dify.")]
VersionOpt = Annotated[_Str, typer.Option(
    "--dify-version", help="Assume this Dify version (when a proxy strips X-Version).")]
PreflightOpt = Annotated[_Bool, typer.Option(
    "--preflight/--no-preflight", help="Check the endpoint like Dify will, first. (default: on)")]
InsecureOpt = Annotated[_Bool, typer.Option("--insecure", help="Skip TLS verification towards Dify.")]


@boundary
def dify_register(
    ctx: typer.Context,
    dify_url: DifyUrlOpt = None,
    endpoint_url: EndpointOpt = None,
    model_name: ModelOpt = None,
    email: EmailOpt = None,
    password_env: PasswordEnvOpt = None,
    password_stdin: PasswordStdinOpt = False,
    admin_api_key_env: AdminKeyOpt = None,
    workspace_id: WorkspaceOpt = None,
    context_size: ContextOpt = None,
    max_tokens: MaxTokensOpt = None,
    server_api_key_env: ServerKeyOpt = None,
    show_reasoning: ReasoningOpt = None,
    structured_output: StructuredOpt = None,
    set_default: SetDefaultOpt = None,
    install_plugin: InstallOpt = None,
    unregister: UnregisterOpt = False,
    dry_run: DryRunOpt = False,
    dify_version: VersionOpt = None,
    preflight: PreflightOpt = None,
    insecure: InsecureOpt = None,
) -> None:
    """Register the gptoss endpoint in Dify (any version 0.15+), idempotently; --unregister removes it."""
    import httpx

    from gptoss_cli import __version__
    from gptoss_cli.dify import DifyClient, RegisterOptions, register
    from gptoss_cli.dify.register import dry_run_failure

    out = output_for(ctx)
    s = settings_for(ctx, {
        "dify.url": dify_url, "dify.endpoint_url": endpoint_url, "dify.model_name": model_name, "dify.email": email,
        "dify.password_env": password_env, "dify.admin_api_key_env": admin_api_key_env,
        "dify.workspace_id": workspace_id, "dify.context_size": context_size, "dify.max_tokens": max_tokens,
        "dify.server_api_key_env": server_api_key_env, "dify.show_reasoning": show_reasoning,
        "dify.structured_output": structured_output,
        "dify.set_default": set_default, "dify.install_plugin": install_plugin, "dify.version": dify_version,
        "dify.preflight": preflight, "dify.insecure": insecure,
    })
    if not s.get("dify.url"):
        raise UsageError("--dify-url is required", hint="or set GPTOSS_DIFY_URL / [dify] url in gptoss.toml")
    admin_key = _named_secret(s.get("dify.admin_api_key_env"), "--admin-api-key-env")
    if admin_key is None and not s.get("dify.email"):
        raise UsageError("--email is required (or --admin-api-key-env VAR with --workspace-id)")
    password = None if admin_key else _password(s, password_stdin)
    opts = RegisterOptions(
        endpoint_url=s.get("dify.endpoint_url"), model_name=s["dify.model_name"], email=s.get("dify.email"),
        password=password, admin_api_key=admin_key, workspace_id=s.get("dify.workspace_id"),
        server_api_key=_named_secret(s.get("dify.server_api_key_env"), "--server-api-key-env")
        or s.get("serve.api_key"),
        context_size=s.get("dify.context_size"), max_tokens=s.get("dify.max_tokens"),
        show_reasoning=s["dify.show_reasoning"], structured_output=s.get("dify.structured_output"),
        set_default=s["dify.set_default"],
        install_plugin=s["dify.install_plugin"], unregister=unregister, preflight=s["dify.preflight"],
        dify_version=s.get("dify.version"),
    )
    timeout = httpx.Timeout(s["dify.timeout"], connect=10.0)
    with httpx.Client(timeout=timeout, verify=not s["dify.insecure"], follow_redirects=False,
                      headers={"User-Agent": f"gptoss/{__version__}"}) as http:
        client = DifyClient(http, s["dify.url"], dry_run=dry_run)
        with steps(out) as step:  # transient on a terminal: the summary below says it all once
            result = register(client, opts, progress=step)
    if not dry_run:
        remember(out, Path(s["fetch.dest"]), "register", result, only_known=True)
    for warning in result.warnings:
        out.warn(warning)
    out.result(result, lambda console: _human(console, result))
    failure = dry_run_failure(result)  # the plan is printed; the exit code is the one the real run would have
    if failure is not None:
        raise failure


def _named_secret(var: Optional[str], flag: str) -> Optional[Secret]:
    if not var:
        return None
    value = read_env(var)
    if value is None:
        raise UsageError(f"{flag} {var}: that environment variable is unset or empty")
    return Secret(value)


def _password(s: Settings, from_stdin: bool) -> Optional[Secret]:
    var = s.get("dify.password_env")
    if from_stdin and var:
        raise UsageError("give either --password-env or --password-stdin, not both")
    if from_stdin:
        line = sys.stdin.readline().rstrip("\r\n")
        if not line:
            raise UsageError("--password-stdin: no password on stdin")
        return Secret(line)
    if var:
        return _named_secret(var, "--password-env")
    if _stdin_is_tty():
        return Secret(typer.prompt("Dify password", hide_input=True, err=True))
    return None  # register() explains which options are missing


def _stdin_is_tty() -> bool:
    return sys.stdin is not None and sys.stdin.isatty()


def _human(console: Console, r: Any) -> None:
    verb = r.action.replace("would-", "would ")
    console.print(f"Dify {r.dify_version} at {r.dify_url} (protocol {r.profile}, auth {r.auth})")
    what = f"{r.model}: {verb}"
    named = " ".join(x for x in (r.credential_name, r.credential_id) if x)
    if named:
        what += f" (credential {named})"
    console.print(what)
    console.print(f"provider {r.provider}, plugin {r.plugin}")
    if r.endpoint_url:
        console.print(f"endpoint {r.endpoint_url}")
    p = r.preflight
    if p is not None and p.chat_ok:
        console.print(f"preflight ok: /v1/models {p.models_ms} ms, 5-token chat {p.chat_ms} ms")
    if r.default_model:
        how = f"verified; moved off the removed {r.model}" if r.default_state == "moved" else "verified"
        console.print(f"default LLM: {r.default_model} ({how})")
    if r.reasoning_note:
        console.print(r.reasoning_note, markup=False)
    if r.structured_output:
        console.print(f"structured output: {r.structured_output} ({r.structured_output_check})", markup=False)
    if r.validation:
        console.print(f"Dify's validation: {r.validation}")
    if r.dry_run:
        console.print("HTTP plan (dry run; nothing that changes Dify was sent):")
        for step in r.plan:
            console.print("  " + step.line(), markup=False)
