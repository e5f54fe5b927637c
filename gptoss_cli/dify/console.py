"""The console operations ``register`` composes: plugin, provider schema, model credentials, default model.

Each function takes a ``DifyClient`` (which already knows the version profile) and speaks the paths of
reference/dify-api.md §2. State-changing calls pass ``changes_state=True`` so a dry run records them unsent.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from gptoss_cli.dify.client import DifyClient
from gptoss_cli.dify.errors import DifyError, PluginMissingError
from gptoss_cli.dify.profiles import PLUGIN_ID

PLUGIN = "/workspaces/current/plugin"
HOW_TO_INSTALL = ("install 'OpenAI-API-compatible' (langgenius/openai_api_compatible) from Dify > Plugins > "
                  "Marketplace, or rerun with --install-plugin")


def _models(provider: str) -> str:
    return f"/workspaces/current/model-providers/{provider}/models"


# -- plugin ----------------------------------------------------------------------------------------------------
def plugin_installed(client: DifyClient) -> bool:
    return installed_plugin(client) is not None


def installed_plugin(client: DifyClient) -> str | None:
    """The installed plugin's version ("" when Dify does not say), or None when it is not installed.

    ``POST list/installations/ids``; where that route is missing (404/405), the paged ``GET list``."""
    try:
        data = client.call("POST", f"{PLUGIN}/list/installations/ids", json={"plugin_ids": [PLUGIN_ID]}) or {}
    except DifyError as exc:
        if exc.status not in (404, 405):
            raise
        data = client.call("GET", f"{PLUGIN}/list", params={"page": 1, "page_size": 256}) or {}
    for p in data.get("plugins") or ():
        uid = str(p.get("plugin_unique_identifier") or "")
        if p.get("plugin_id") == PLUGIN_ID or uid.startswith(PLUGIN_ID + ":"):
            return str(p.get("version") or uid.partition(":")[2].partition("@")[0] or "")
    return None


def install_plugin(client: DifyClient, *, timeout: float, interval: float,
                   sleep: Callable[[float], None] = time.sleep,
                   clock: Callable[[], float] = time.monotonic) -> str:
    """Install the plugin from the marketplace and poll the task; returns the unique identifier installed."""
    data = client.call("POST", f"{PLUGIN}/list/latest-versions", json={"plugin_ids": [PLUGIN_ID]}) or {}
    entry = (data.get("versions") or {}).get(PLUGIN_ID)
    if not entry or not entry.get("unique_identifier"):
        raise PluginMissingError(f"Dify's marketplace offers no version of {PLUGIN_ID}",
                                 hint="is MARKETPLACE_ENABLED=true and the marketplace reachable from Dify? "
                                      "Otherwise upload the .difypkg in Dify > Plugins")
    uid = str(entry["unique_identifier"])
    started = client.call("POST", f"{PLUGIN}/install/marketplace", json={"plugin_unique_identifiers": [uid]},
                          changes_state=True)
    if started is None:  # dry run
        client.planned("GET", f"{PLUGIN}/tasks/<task_id>")
        return uid
    if started.get("all_installed") or not started.get("task_id"):
        return uid
    task_id = str(started["task_id"])
    deadline = clock() + timeout
    while True:
        task = (client.call("GET", f"{PLUGIN}/tasks/{task_id}") or {}).get("task") or {}
        status = task.get("status")
        if status == "success":
            return uid
        if status == "failed":
            reasons = "; ".join(str(p.get("message")) for p in task.get("plugins") or () if p.get("message"))
            raise PluginMissingError(f"installing {uid} failed: {reasons or 'no reason given'}",
                                     hint="see Dify > Plugins > install tasks; the plugin daemon needs PyPI")
        if clock() >= deadline:
            raise PluginMissingError(f"installing {uid} did not finish within {timeout:.0f} s (status {status})",
                                     hint="check Dify > Plugins, then rerun")
        sleep(interval)


# -- provider and schema ---------------------------------------------------------------------------------------
def provider_entry(client: DifyClient, provider: str) -> Mapping[str, Any] | None:
    data = client.call("GET", "/workspaces/current/model-providers", params={"model_type": "llm"}) or {}
    for entry in data.get("data") or ():
        if entry.get("provider") == provider:
            return entry
    return None


def custom_model_exists(entry: Mapping[str, Any] | None, model: str) -> bool:
    custom = ((entry or {}).get("custom_configuration") or {}).get("custom_models") or ()
    return any(m.get("model") == model and m.get("model_type") in ("llm", "text-generation") for m in custom)


# -- model credentials -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Existing:
    """What Dify holds for the model now (credentials API) or whether the model exists (upsert API)."""

    exists: bool
    current_id: str | None = None
    current_name: str | None = None
    available: tuple[tuple[str, str], ...] = ()  # (credential_id, credential_name)


def read_existing(client: DifyClient, provider: str, model: str, entry: Mapping[str, Any] | None) -> Existing:
    data = client.call("GET", f"{_models(provider)}/credentials",
                       params={"model": model, "model_type": "llm"}) or {}
    available = tuple((str(c.get("credential_id")), str(c.get("credential_name") or ""))
                      for c in data.get("available_credentials") or () if c.get("credential_id"))
    current = data.get("current_credential_id")
    exists = bool(data.get("credentials")) or bool(current) or custom_model_exists(entry, model)
    return Existing(exists=exists, current_id=str(current) if current else None,
                    current_name=data.get("current_credential_name"), available=available)


@dataclass(frozen=True)
class Written:
    action: str  # created | updated
    credential_id: str | None
    credential_name: str | None


def write_credentials(client: DifyClient, provider: str, model: str, credentials: Mapping[str, str],
                      existing: Existing, name: str, entry: Mapping[str, Any] | None) -> Written:
    """Create or update in place; never adds a second credential for the same model."""
    profile = client.profile
    assert profile is not None
    if profile.model_api == "upsert":
        client.call("POST", _models(provider), json={"model": model, "model_type": "llm",
                                                     "credentials": dict(credentials)}, changes_state=True)
        return Written("updated" if existing.exists else "created", None, None)
    base = f"{_models(provider)}/credentials"
    target = existing.current_id or next((cid for cid, cname in existing.available if cname == name), None)
    if target is None and existing.available:
        target = existing.available[0][0]
    if target is not None:
        client.call("PUT", base, json={"model": model, "model_type": "llm", "credential_id": target,
                                       "credentials": dict(credentials)}, changes_state=True)
        if existing.current_id != target:
            _switch(client, base, model, target)
        tname = existing.current_name if target == existing.current_id else dict(existing.available).get(target)
        return Written("updated", target, tname)
    client.call("POST", base, json={"model": model, "model_type": "llm", "name": name,
                                    "credentials": dict(credentials)}, changes_state=True)
    if client.dry_run:
        return Written("created", None, name)
    after = read_existing(client, provider, model, entry)
    ours = next((cid for cid, cname in after.available if cname == name), after.current_id)
    if ours and after.current_id != ours:
        _switch(client, base, model, ours)
    return Written("created", ours, name)


def _switch(client: DifyClient, base: str, model: str, credential_id: str) -> None:
    client.call("POST", f"{base}/switch", json={"model": model, "model_type": "llm",
                                                "credential_id": credential_id}, changes_state=True)


def validate_only(client: DifyClient, provider: str, model: str, credentials: Mapping[str, str]) -> str | None:
    """Dify's validate-only endpoint (saves nothing); the error text, or None when Dify accepts."""
    data = client.call("POST", f"{_models(provider)}/credentials/validate",
                       json={"model": model, "model_type": "llm", "credentials": dict(credentials)}) or {}
    return None if data.get("result") == "success" else str(data.get("error") or "validation failed")


def remove_model(client: DifyClient, provider: str, model: str, existing: Existing,
                 entry: Mapping[str, Any] | None) -> tuple[str, ...]:
    """Delete every credential of the model (1.8+), or the model record; returns what was deleted."""
    removed: list[str] = []
    if client.profile and client.profile.model_api == "credentials":
        ids = [cid for cid, _ in existing.available]
        if existing.current_id and existing.current_id not in ids:
            ids.append(existing.current_id)
        for cid in ids:
            client.call("DELETE", f"{_models(provider)}/credentials",
                        json={"model": model, "model_type": "llm", "credential_id": cid}, changes_state=True)
            removed.append(cid)
        if ids and client.dry_run:
            return tuple(removed)  # deleting the last credential deletes the model record too
        if ids:
            entry = provider_entry(client, provider)
    if custom_model_exists(entry, model) or (client.profile and client.profile.model_api == "upsert"
                                             and existing.exists):
        client.call("DELETE", _models(provider), json={"model": model, "model_type": "llm"}, changes_state=True)
        removed.append(f"model:{model}")
    return tuple(removed)


# -- default model ---------------------------------------------------------------------------------------------
def set_default_model(client: DifyClient, provider: str, model: str) -> str | None:
    """GET → POST → GET (Dify's default-model quirk, §2.6); returns ``provider/model`` once verified."""
    path = "/workspaces/current/default-model"
    body = {"model_settings": [{"model_type": "llm", "provider": provider, "model": model}]}
    if client.dry_run:  # even the first GET can create a default record in Dify, so nothing is sent
        client.planned("GET", path + "?model_type=llm")
        client.call("POST", path, json=body, changes_state=True)
        client.planned("GET", path + "?model_type=llm")
        return None
    client.call("GET", path, params={"model_type": "llm"})
    client.call("POST", path, json=body, changes_state=True)
    data = (client.call("GET", path, params={"model_type": "llm"}) or {}).get("data") or {}
    got_provider = (data.get("provider") or {}).get("provider")
    if data.get("model") != model or got_provider != provider:
        raise DifyError(f"Dify did not keep {model} as the default LLM (it reports "
                        f"{got_provider}/{data.get('model')})",
                        hint="set it in Dify > Settings > Model Provider > System Model Settings")
    return f"{provider}/{model}"


def heal_default(client: DifyClient, provider: str, model: str) -> tuple[str, str | None]:
    """After removing ``model``: a workspace default that still names it is moved to the model Dify itself would pick.

    Dify keeps a default pointing at a deleted model (reference/dify-api.md §9) and has no request that unsets a
    default. Returns ``(state, default)``: ``unaffected`` (the default names another model, or none is set),
    ``moved`` (to the first active LLM Dify lists, as it picks with no default), ``dangling`` (no other LLM to move
    it to) or ``would-check`` (dry run: even reading the default can write in Dify, so nothing is sent); the
    caller reports ``unknown`` when Dify answered these reads with an error.
    """
    path = "/workspaces/current/default-model"
    if client.dry_run:
        client.planned("GET", path + "?model_type=llm")
        return "would-check", None
    data = (client.call("GET", path, params={"model_type": "llm"}) or {}).get("data") or {}
    current = ((data.get("provider") or {}).get("provider"), data.get("model"))
    if current != (provider, model):
        return "unaffected", f"{current[0]}/{current[1]}" if data else None
    listing = client.call("GET", "/workspaces/current/models/model-types/llm") or {}
    pick = next(((str(p.get("provider")), str(m.get("model"))) for p in listing.get("data") or ()
                 for m in p.get("models") or ()
                 if m.get("status", "active") == "active" and (p.get("provider"), m.get("model")) != current), None)
    if pick is None:
        return "dangling", f"{provider}/{model}"
    body = {"model_settings": [{"model_type": "llm", "provider": pick[0], "model": pick[1]}]}
    client.call("POST", path, json=body, changes_state=True)
    after = (client.call("GET", path, params={"model_type": "llm"}) or {}).get("data") or {}
    got = ((after.get("provider") or {}).get("provider"), after.get("model"))
    return ("dangling" if got == current else "moved"), f"{got[0]}/{got[1]}"


__all__ = [
    "HOW_TO_INSTALL",
    "Existing",
    "Written",
    "custom_model_exists",
    "heal_default",
    "install_plugin",
    "installed_plugin",
    "plugin_installed",
    "provider_entry",
    "read_existing",
    "remove_model",
    "set_default_model",
    "validate_only",
    "write_credentials",
]
