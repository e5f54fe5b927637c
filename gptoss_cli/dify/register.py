"""``register()``: put a gptoss endpoint into Dify as an OpenAI-API-compatible custom LLM, idempotently.

Order: preflight the endpoint (before touching Dify) → read Dify's version → log in once (or admin key) → check
the account's role → plugin present (or install it) → read the provider's credential schema → decide reasoning and
structured output for this version (``features``) → create or update the one credential (or, with ``unregister``,
remove everything and move a default left naming the removed model) → optionally make it the default LLM → log out.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable

import httpx

from gptoss_cli.config import Secret
from gptoss_cli.dify import console, features
from gptoss_cli.dify.advice import advice as _advice, translate as _translate
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
from gptoss_cli.dify.preflight import PreflightResult, preflight
from gptoss_cli.errors import UsageError

Progress = Callable[[str], None]


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
    structured_output: bool | None = None  # None: register it when the endpoint answers a json_schema request
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
    default_state: str | None = None  # set | moved | dangling | unaffected | would-check (see console.heal_default)
    preflight: PreflightResult | None = None
    validation: str | None = None  # dry run only: Dify's validate-only verdict ("ok" or its error)
    validation_hint: str | None = None  # what to do when that verdict is an error
    reasoning: str | None = None  # shown | hidden-by-dify | hidden-by-server (features.plan_reasoning)
    reasoning_note: str | None = None  # what hiding changes and what it does not
    structured_output: str | None = None  # supported | not_supported | None (this Dify has no such field)
    structured_output_check: str | None = None  # ok | not checked | forced | why the endpoint failed the probe
    warnings: tuple[str, ...] = ()
    dry_run: bool = False
    plan: tuple[PlanStep, ...] = ()

    @property
    def would_fail(self) -> bool:
        """A dry run whose real run would stop at Dify's check (exit 3)."""
        v = self.validation
        return self.dry_run and v is not None and v != "ok" and not v.startswith("unavailable")


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
    pre = None
    if endpoint and opts.preflight and not opts.unregister:
        pre = _preflight(endpoint_http or client.http, endpoint, opts, warnings, progress, client)

    state = client.detect(opts.dify_version)
    profile = client.profile
    assert profile is not None
    progress(f"Dify {state.version} (protocol {profile.name})")
    try:
        result = _run(client, opts, endpoint, pre, warnings, progress, sleep, endpoint_http or client.http)
    finally:
        client.logout()
    return replace(result, plan=tuple(client.plan))


def _run(client: DifyClient, opts: RegisterOptions, endpoint: str | None, pre: PreflightResult | None,
         warnings: list[str], progress: Progress, sleep: Callable[[float], None],
         endpoint_http: httpx.Client) -> RegisterResult:
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
    plugin, plugin_version = "builtin", None
    if profile.uses_plugins:
        plugin, plugin_version = _ensure_plugin(client, opts, sleep, progress)
    dry = client.dry_run
    entry = None if plugin == "would-install" else console.provider_entry(client, provider)
    if entry is None and plugin != "would-install":
        if opts.unregister:
            return _result(client, opts, auth, plugin, endpoint, "absent", None, None, pre, warnings)
        raise PluginMissingError(f"Dify lists no provider {provider}", hint=console.HOW_TO_INSTALL)

    if opts.unregister:
        return _unregister(client, opts, auth, plugin, endpoint, pre, warnings, progress, entry)

    schema = (entry or {}).get("model_credential_schema") or fallback_schema()
    if entry is None:
        warnings.append("credential fields assumed from plugin 0.0.63 (the plugin is not installed yet)")
    plan = _reasoning(client, opts, schema, str(endpoint), plugin_version, endpoint_http)
    structured, check = _structured(schema, opts, pre, endpoint_http, warnings, progress)
    desired = _desired(opts, plan.endpoint_url, pre, structured is not False)
    form = build_credentials(schema, desired, required_default=not profile.uses_plugins)
    loud = [f for f in form.dropped if f not in features.HANDLED_FIELDS]
    if loud:
        warnings.append("this Dify/plugin version does not accept: " + ", ".join(loud))
    existing = console.read_existing(client, provider, opts.model_name, entry) if entry else console.Existing(False)
    validation = hint = None
    if dry and entry is not None:
        validation, hint = _dry_validation(client, provider, opts.model_name, form.credentials, plan.endpoint_url)
    try:
        written = console.write_credentials(client, provider, opts.model_name, form.credentials, existing,
                                            opts.credential_name, entry)
    except DifyError as exc:
        raise _translate(exc, plan.endpoint_url, client) from None
    progress(f"{opts.model_name}: {'would be ' if dry else ''}{written.action}")
    default = None
    if opts.set_default:
        default = console.set_default_model(client, provider, opts.model_name)
    shown = {k: (MASK if k == "api_key" and v else v) for k, v in form.credentials.items()}
    return _result(client, opts, auth, plugin, plan.endpoint_url, written.action, written.credential_id,
                   written.credential_name, pre, warnings, credentials=shown, dropped=form.dropped,
                   default=default, default_state="set" if opts.set_default and not dry else None,
                   validation=validation, validation_hint=hint, reasoning=plan.mode, reasoning_note=plan.note,
                   structured_output=_structured_value(form.credentials), structured_output_check=check)


def _reasoning(client: DifyClient, opts: RegisterOptions, schema: Any, endpoint: str, plugin_version: str | None,
               endpoint_http: httpx.Client) -> features.ReasoningPlan:
    """How this version hides (or shows) reasoning; the no-reasoning mount must exist where it is needed."""
    plan = features.plan_reasoning(schema, endpoint, opts.show_reasoning, plugin_version, str(client.version))
    if plan.mode == "hidden-by-server":
        problem = features.mount_problem(endpoint_http, plan.endpoint_url, opts.server_api_key)
        if problem:
            raise EndpointCheckFailed(f"cannot hide reasoning: {client.scrub(problem)}",
                                      hint="serve the model with gptoss serve, or register without --hide-reasoning")
    return plan


def _unregister(client: DifyClient, opts: RegisterOptions, auth: str, plugin: str, endpoint: str | None,
                pre: PreflightResult | None, warnings: list[str], progress: Progress,
                entry: Any) -> RegisterResult:
    provider = client.profile.provider  # type: ignore[union-attr]
    existing = console.read_existing(client, provider, opts.model_name, entry)
    removed = console.remove_model(client, provider, opts.model_name, existing, entry)
    action = "removed" if removed else "absent"
    progress(f"{opts.model_name}: {action}")
    try:
        state, default = console.heal_default(client, provider, opts.model_name)
    except (DifySessionError, DifyPermissionError):
        raise
    except DifyError as exc:  # the model is gone already; say what could not be checked, do not fail the run
        state, default = "unknown", None
        warnings.append(f"could not check the workspace default LLM after removing {opts.model_name}: "
                        f"{client.scrub(exc.message)}")
    if state == "moved":
        progress(f"workspace default LLM moved from the removed {opts.model_name} to {default}")
    elif state == "dangling":
        warnings.append(f"the workspace default LLM still names the removed {default}: Dify offers no way to unset "
                        "it and has no other LLM to point it at; pick one in Settings > Model Provider > System "
                        "Model Settings once another model is added")
    return _result(client, opts, auth, plugin, endpoint, action, None, None, pre, warnings, removed=removed,
                   default=default if state == "moved" else None, default_state=state)


def _structured(schema: Any, opts: RegisterOptions, pre: PreflightResult | None, http: httpx.Client,
                warnings: list[str], progress: Progress) -> tuple[bool | None, str | None]:
    """Whether to register structured output: forced, or probed with a json_schema request like Dify's."""
    if not features.schema_has(schema, "structured_output_support"):
        return None, None
    if opts.structured_output is not None:
        return opts.structured_output, "forced"
    if pre is None or not pre.chat_ok:
        return True, "not checked"
    progress("structured output: asking the endpoint for JSON that fits a schema, as Dify will")
    problem = features.probe_structured_output(http, pre.endpoint_url, pre.served_model or opts.model_name,
                                               opts.server_api_key)
    if problem is None:
        return True, "ok"
    warnings.append(f"structured output registered as not_supported: the endpoint's answer to a json_schema request "
                    f"failed ({problem}), so Dify will not send one (pass --structured-output to register it anyway)")
    return False, problem


def _structured_value(credentials: dict[str, str]) -> str | None:
    return credentials.get("structured_output_support")


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
        removed=extra.get("removed", ()), default_model=extra.get("default"),
        default_state=extra.get("default_state"), preflight=pre, validation=extra.get("validation"),
        validation_hint=extra.get("validation_hint"), reasoning=extra.get("reasoning"),
        reasoning_note=extra.get("reasoning_note"), structured_output=extra.get("structured_output"),
        structured_output_check=extra.get("structured_output_check"),
        warnings=tuple(client.scrub(w) for w in warnings), dry_run=client.dry_run, plan=tuple(client.plan))


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


def _desired(opts: RegisterOptions, endpoint: str | None, pre: PreflightResult | None,
             structured: bool = True) -> Desired:
    context = opts.context_size or (pre.context_size if pre else None) or DEFAULT_CONTEXT_SIZE
    max_tokens = opts.max_tokens or min(DEFAULT_MAX_TOKENS, context)
    served = pre.served_model if pre and pre.served_model and pre.served_model != opts.model_name else None
    return Desired(endpoint_url=str(endpoint), api_key=opts.server_api_key.reveal() if opts.server_api_key else "",
                   context_size=context, max_tokens=max_tokens, show_reasoning=opts.show_reasoning,
                   endpoint_model_name=served, structured_output=structured)


def _dry_validation(client: DifyClient, provider: str, model: str, credentials: dict[str, str],
                    endpoint: str | None) -> tuple[str, str | None]:
    """Dify's validate-only verdict for the plan (and what to do when it fails); a missing route is no verdict."""
    try:
        verdict = console.validate_only(client, provider, model, credentials)
    except (DifySessionError, DifyPermissionError):
        raise
    except DifyError as exc:
        if exc.status != 400:  # the route is missing or broken: say so, the plan is still complete
            return "unavailable: " + client.scrub(exc.message), None
        verdict = exc.message  # schema problems come back as 400
    if verdict is None:
        return "ok", None
    return client.scrub(verdict), _advice(verdict, endpoint, client)


def dry_run_failure(result: RegisterResult) -> CredentialsRejectedError | None:
    """The error the real run would stop with, for a dry run whose plan Dify's check refuses (exit 3)."""
    if not result.would_fail:
        return None
    return CredentialsRejectedError(f"dry run: Dify's check of the endpoint would fail: {result.validation}",
                                    hint=result.validation_hint, status=400)


def _check_role(client: DifyClient) -> None:
    """Fail early, in one line, when the account cannot write model settings (admin or owner needed).

    ``/workspaces/current`` is GET in Dify 0.15 and POST in 1.x (the profile says which); a 405 tries the other."""
    method = client.profile.workspace_method if client.profile else "POST"
    data = None
    for attempt in (method, "GET" if method == "POST" else "POST"):
        try:
            data = client.call(attempt, "/workspaces/current") or {}
            break
        except DifySessionError:
            raise
        except DifyError as exc:
            if exc.status != 405:
                return  # a proxy or an odd version: the write itself will say 403 if needed
    if data is None:
        return
    role = data.get("role")
    if role and role not in ("owner", "admin"):
        raise DifyPermissionError(f"the account's role in workspace {data.get('name')!r} is {role!r}; "
                                  "registering a model needs admin or owner",
                                  hint="log in as the workspace owner or an admin", status=403)


def _ensure_plugin(client: DifyClient, opts: RegisterOptions, sleep: Callable[[float], None],
                   progress: Progress) -> tuple[str, str | None]:
    version = console.installed_plugin(client)
    if version is not None:
        return "installed", version or None
    if opts.unregister:
        return "missing", None
    if not opts.install_plugin:
        raise PluginMissingError("the openai_api_compatible plugin is not installed in this Dify workspace",
                                 hint=console.HOW_TO_INSTALL)
    progress("installing langgenius/openai_api_compatible from the marketplace")
    uid = console.install_plugin(client, timeout=opts.plugin_timeout, interval=opts.plugin_poll_interval,
                                 sleep=sleep)
    if client.dry_run:
        return "would-install", None
    progress(f"installed {uid.split('@')[0]}")
    return "installed-now", None


__all__ = ["RegisterOptions", "RegisterResult", "dry_run_failure", "register"]
