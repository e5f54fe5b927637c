"""``register()``: put a gptoss endpoint into Dify as an OpenAI-API-compatible custom LLM, idempotently.

Order: preflight the endpoint (before touching Dify) → read Dify's version → log in once (or admin key) → check
the account's role → plugin present (or install it) → read the provider's credential schema → create or update
the one credential (or remove everything with ``unregister``) → optionally make it the default LLM → log out.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable

import httpx

from gptoss_cli.config import Secret
from gptoss_cli.dify import console
from gptoss_cli.dify.client import DifyClient
from gptoss_cli.dify.credentials import (
    DEFAULT_CONTEXT_SIZE,
    DEFAULT_MAX_TOKENS,
    Desired,
    build_credentials,
    fallback_schema,
    normalize_endpoint_url,
)
from gptoss_cli.dify.errors import (
    CredentialsRejectedError,
    DifyError,
    DifyPermissionError,
    DifySessionError,
    EndpointCheckFailed,
    PluginMissingError,
)
from gptoss_cli.dify.plan import MASK, PlanStep
from gptoss_cli.dify.preflight import PreflightResult, lan_address, loopback_warning, preflight
from gptoss_cli.errors import UsageError

Progress = Callable[[str], None]
_VALIDATION_MARKERS = ("credentials validation", "validation failed", "invalid response object", "json decode")


def _no_progress(_message: str) -> None:
    return None


@dataclass(frozen=True)
class RegisterOptions:
    endpoint_url: str | None
    model_name: str = "gpt-oss-20b"
    email: str | None = None
    password: Secret | None = None
    admin_api_key: Secret | None = None
    workspace_id: str | None = None
    server_api_key: Secret | None = None
    context_size: int | None = None
    max_tokens: int | None = None
    show_reasoning: bool = True
    set_default: bool = False
    install_plugin: bool = False
    unregister: bool = False
    preflight: bool = True
    dify_version: str | None = None
    credential_name: str = "gptoss"
    plugin_timeout: float = 300.0
    plugin_poll_interval: float = 2.0


@dataclass(frozen=True)
class RegisterResult:
    """What happened (or, with ``dry_run``, would happen); holds no secret (api_key is masked)."""

    dify_url: str
    dify_version: str
    profile: str
    auth: str  # password | admin-key
    provider: str
    model: str
    action: str  # created | updated | removed | absent (prefixed "would-" in a dry run)
    credential_id: str | None
    credential_name: str | None
    plugin: str  # builtin | installed | installed-now | would-install
    endpoint_url: str | None
    credentials: dict[str, str] = field(default_factory=dict)
    dropped_fields: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    default_model: str | None = None
    preflight: PreflightResult | None = None
    validation: str | None = None  # dry run only: Dify's validate-only verdict ("ok" or its error)
    warnings: tuple[str, ...] = ()
    dry_run: bool = False
    plan: tuple[PlanStep, ...] = ()


def _check_options(opts: RegisterOptions) -> None:
    if opts.admin_api_key is not None:
        if not opts.workspace_id:
            raise UsageError("--admin-api-key-env needs --workspace-id",
                             hint="GET /console/api/workspaces lists the ids, or read the tenants table")
    elif not opts.email or opts.password is None:
        raise UsageError("give --email and a password (--password-env VAR, --password-stdin or the prompt), "
                         "or --admin-api-key-env VAR with --workspace-id")
    if not opts.unregister and not opts.endpoint_url:
        raise UsageError("--endpoint-url is required", hint="the gptoss URL as Dify reaches it, ending in /v1")
    if not opts.model_name or len(opts.credential_name) > 30:
        raise UsageError("--model-name must be non-empty and the credential name at most 30 characters")


def register(client: DifyClient, opts: RegisterOptions, *, endpoint_http: httpx.Client | None = None,
             progress: Progress = _no_progress, sleep: Callable[[float], None] = time.sleep) -> RegisterResult:
    """Register (or with ``opts.unregister`` remove) the model; ``client.dry_run`` sends no state change."""
    _check_options(opts)
    warnings: list[str] = []
    for secret in (opts.password, opts.admin_api_key, opts.server_api_key):
        client.add_secret(secret)
    endpoint = None
    if opts.endpoint_url:
        endpoint, note = normalize_endpoint_url(opts.endpoint_url)
        if note:
            warnings.append(note)
        lb = loopback_warning(endpoint, client.base_url, lan=lan_address())
        if lb:
            warnings.append(lb)
    pre = None
    if endpoint and opts.preflight and not opts.unregister:
        pre = _preflight(endpoint_http or client.http, endpoint, opts, warnings, progress, client)

    state = client.detect(opts.dify_version)
    profile = client.profile
    assert profile is not None
    progress(f"Dify {state.version} (protocol {profile.name})")
    try:
        result = _run(client, opts, endpoint, pre, warnings, progress, sleep)
    finally:
        client.logout()
    return replace(result, plan=tuple(client.plan))


def _run(client: DifyClient, opts: RegisterOptions, endpoint: str | None, pre: PreflightResult | None,
         warnings: list[str], progress: Progress, sleep: Callable[[float], None]) -> RegisterResult:
    profile = client.profile
    assert profile is not None and client.version is not None
    if opts.admin_api_key is not None:
        client.use_admin_key(opts.admin_api_key, str(opts.workspace_id))
        auth = "admin-key"
    else:
        client.login(str(opts.email), opts.password)  # type: ignore[arg-type]
        auth = "password"
    _check_role(client)
    provider = profile.provider
    plugin = "builtin"
    if profile.uses_plugins:
        plugin = _ensure_plugin(client, opts, sleep, progress)
    dry = client.dry_run
    entry = None if plugin == "would-install" else console.provider_entry(client, provider)
    if entry is None and plugin != "would-install":
        if opts.unregister:
            return _result(client, opts, auth, plugin, endpoint, "absent", None, None, pre, warnings)
        raise PluginMissingError(f"Dify lists no provider {provider}", hint=console.HOW_TO_INSTALL)

    if opts.unregister:
        existing = console.read_existing(client, provider, opts.model_name, entry)
        removed = console.remove_model(client, provider, opts.model_name, existing, entry)
        action = "removed" if removed else "absent"
        progress(f"{opts.model_name}: {action}")
        return _result(client, opts, auth, plugin, endpoint, action, None, None, pre, warnings, removed=removed)

    schema = (entry or {}).get("model_credential_schema") or fallback_schema()
    if entry is None:
        warnings.append("credential fields assumed from plugin 0.0.63 (the plugin is not installed yet)")
    desired = _desired(opts, endpoint, pre)
    form = build_credentials(schema, desired, required_default=not profile.uses_plugins)
    if form.dropped:
        warnings.append("this Dify/plugin version does not accept: " + ", ".join(form.dropped))
    existing = console.read_existing(client, provider, opts.model_name, entry) if entry else console.Existing(False)
    validation = None
    if dry and entry is not None:
        validation = _dry_validation(client, provider, opts.model_name, form.credentials, endpoint, warnings)
    try:
        written = console.write_credentials(client, provider, opts.model_name, form.credentials, existing,
                                            opts.credential_name, entry)
    except DifyError as exc:
        raise _translate(exc, endpoint, client) from None
    progress(f"{opts.model_name}: {'would be ' if dry else ''}{written.action}")
    default = None
    if opts.set_default:
        default = console.set_default_model(client, provider, opts.model_name)
    shown = {k: (MASK if k == "api_key" and v else v) for k, v in form.credentials.items()}
    return _result(client, opts, auth, plugin, endpoint, written.action, written.credential_id,
                   written.credential_name, pre, warnings, credentials=shown, dropped=form.dropped,
                   default=default, validation=validation)


def _result(client: DifyClient, opts: RegisterOptions, auth: str, plugin: str, endpoint: str | None, action: str,
            cred_id: str | None, cred_name: str | None, pre: PreflightResult | None, warnings: list[str],
            **extra: Any) -> RegisterResult:
    assert client.profile is not None and client.version is not None
    if client.dry_run and action in ("created", "updated", "removed"):
        action = "would-" + action.replace("created", "create").replace("updated", "update").replace(
            "removed", "remove")
    return RegisterResult(
        dify_url=client.base_url, dify_version=client.version, profile=client.profile.name, auth=auth,
        provider=client.profile.provider, model=opts.model_name, action=action, credential_id=cred_id,
        credential_name=cred_name, plugin=plugin, endpoint_url=endpoint,
        credentials=extra.get("credentials", {}), dropped_fields=extra.get("dropped", ()),
        removed=extra.get("removed", ()), default_model=extra.get("default"), preflight=pre,
        validation=extra.get("validation"), warnings=tuple(client.scrub(w) for w in warnings),
        dry_run=client.dry_run, plan=tuple(client.plan))


def _preflight(http: httpx.Client, endpoint: str, opts: RegisterOptions, warnings: list[str],
               progress: Progress, client: DifyClient) -> PreflightResult:
    progress(f"preflight: {endpoint}")
    pre = preflight(http, endpoint, opts.model_name, api_key=opts.server_api_key)
    if not pre.reachable:
        warnings.append(f"preflight: {client.scrub(pre.problem or '')}; Dify may still reach it from its own "
                        "network, continuing")
        return pre
    if pre.problem:
        raise EndpointCheckFailed(f"{endpoint} fails the check Dify will run: {client.scrub(pre.problem)}",
                                  hint=_advice(pre.problem, endpoint, client))
    progress(f"preflight ok: /models {pre.models_ms} ms, 5-token chat {pre.chat_ms} ms")
    return pre


def _desired(opts: RegisterOptions, endpoint: str | None, pre: PreflightResult | None) -> Desired:
    context = opts.context_size or (pre.context_size if pre else None) or DEFAULT_CONTEXT_SIZE
    max_tokens = opts.max_tokens or min(DEFAULT_MAX_TOKENS, context)
    served = pre.served_model if pre and pre.served_model and pre.served_model != opts.model_name else None
    return Desired(endpoint_url=str(endpoint), api_key=opts.server_api_key.reveal() if opts.server_api_key else "",
                   context_size=context, max_tokens=max_tokens, show_reasoning=opts.show_reasoning,
                   endpoint_model_name=served)


def _dry_validation(client: DifyClient, provider: str, model: str, credentials: dict[str, str],
                    endpoint: str | None, warnings: list[str]) -> str:
    """Dify's validate-only verdict for the plan; an error of that optional endpoint never aborts a dry run."""
    try:
        verdict = console.validate_only(client, provider, model, credentials)
    except (DifySessionError, DifyPermissionError):
        raise
    except DifyError as exc:
        if exc.status != 400:  # the route is missing or broken: say so, the plan is still complete
            return "unavailable: " + client.scrub(exc.message)
        verdict = exc.message  # schema problems come back as 400
    if verdict is None:
        return "ok"
    validation = client.scrub(verdict)
    warnings.append(f"Dify's check would fail: {validation} ({_advice(verdict, endpoint, client)})")
    return validation


def _check_role(client: DifyClient) -> None:
    """Fail early, in one line, when the account cannot write model settings (admin or owner needed)."""
    try:
        data = client.call("POST", "/workspaces/current") or {}
    except DifySessionError:
        raise
    except DifyError:
        return  # older versions or proxies may not offer it; the write itself will say 403 if needed
    role = data.get("role")
    if role and role not in ("owner", "admin"):
        raise DifyPermissionError(f"the account's role in workspace {data.get('name')!r} is {role!r}; "
                                  "registering a model needs admin or owner",
                                  hint="log in as the workspace owner or an admin", status=403)


def _ensure_plugin(client: DifyClient, opts: RegisterOptions, sleep: Callable[[float], None],
                   progress: Progress) -> str:
    if console.plugin_installed(client):
        return "installed"
    if opts.unregister:
        return "missing"
    if not opts.install_plugin:
        raise PluginMissingError("the openai_api_compatible plugin is not installed in this Dify workspace",
                                 hint=console.HOW_TO_INSTALL)
    progress("installing langgenius/openai_api_compatible from the marketplace")
    uid = console.install_plugin(client, timeout=opts.plugin_timeout, interval=opts.plugin_poll_interval,
                                 sleep=sleep)
    if client.dry_run:
        return "would-install"
    progress(f"installed {uid.split('@')[0]}")
    return "installed-now"


def _translate(exc: DifyError, endpoint: str | None, client: DifyClient) -> DifyError:
    """Dify's 400 on a credential write → one line with Dify's reason and what to do about it."""
    text = exc.message.lower()
    if exc.status == 400 and "does not exist" in text and "provider" in text:
        return PluginMissingError(exc.message, hint=console.HOW_TO_INSTALL)
    if exc.status == 400 and any(m in text for m in _VALIDATION_MARKERS):
        return CredentialsRejectedError(f"Dify could not validate the endpoint: {exc.message}",
                                        hint=_advice(exc.message, endpoint, client), status=400, code=exc.code)
    return exc


def _advice(reason: str, endpoint: str | None, client: DifyClient) -> str:
    text = reason.lower()
    if "status code 401" in text or "api key" in text:
        return "the server wants an API key: pass --server-api-key-env VAR naming the key gptoss serve uses"
    if "status code 404" in text:
        return "check that --endpoint-url ends in /v1 and --model-name matches an id from /v1/models"
    if "status code 5" in text:
        return "the server failed or is still loading: check gptoss serve (GET /health) and its log"
    if "invalid response object" in text or "json decode" in text:
        return "the URL does not point at an OpenAI-compatible server; point --endpoint-url at gptoss's /v1"
    if "should be string" in text or "is required" in text or "not in options" in text:
        return "this Dify/plugin version expects other credential fields; please report it"
    near = loopback_warning(endpoint or "", client.base_url) if endpoint else None
    if near:
        return "Dify cannot reach the endpoint: " + near
    return ("Dify cannot reach the endpoint from its containers: make gptoss serve listen on an address Dify can "
            "reach (--host 0.0.0.0) and check firewalls")


__all__ = ["RegisterOptions", "RegisterResult", "register"]
