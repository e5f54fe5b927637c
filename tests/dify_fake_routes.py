"""The fake Dify's authenticated routes: workspace, plugin, providers, model credentials, default model."""

from __future__ import annotations

import re
from typing import Any

from tests.dify_fake import OTHER_PROVIDER, PLUGIN_ID, Cred, FakeDify, Reply, Seen, err

HIDDEN = "[__HIDDEN__]"
_MODELS = re.compile(r"^/workspaces/current/model-providers/(?P<p>.+?)/models(?P<rest>/.*)?$")


def obfuscate(value: str) -> str:
    return value[:6] + "*" * 12 + value[-2:] if len(value) > 8 else "*" * len(value)


def route_protected(f: FakeDify, r: Seen, p: str) -> Any:
    if p == "/workspaces/current":  # TenantApi: GET only in 0.15.3, POST in 1.x (§9)
        if r.method != ("POST" if f.plugins else "GET"):
            raise err(405, "method_not_allowed", "The method is not allowed for the requested URL.")
        return {"id": f.workspace_id, "name": "Admin's Workspace", "status": "normal",
                "role": r.headers.get("_role")}
    if p == "/workspaces/current/models/model-types/llm" and r.method == "GET":
        return {"data": _active_llms(f)}
    if p == "/workspaces" and r.method == "GET":
        return {"workspaces": [{"id": f.workspace_id, "name": "Admin's Workspace", "current": True}]}
    if p.startswith("/workspaces/current/plugin/"):
        if not f.plugins:
            raise Reply(404, {"message": "Not Found"})
        return _plugin(f, r, p[len("/workspaces/current/plugin/"):])
    if p == "/workspaces/current/model-providers" and r.method == "GET":
        return {"data": _providers(f)}
    if p == "/workspaces/current/default-model":
        return _default_model(f, r)
    m = _MODELS.match(p)
    if m:
        provider, rest = m.group("p"), m.group("rest") or ""
        if not f.plugins and "/" in provider:
            raise Reply(404, {"message": "Not Found"})
        if provider != f.provider or (f.plugins and not f.plugin_installed):
            raise err(400, "invalid_param", f"Provider {provider} does not exist.")
        return _models(f, r, rest)
    raise Reply(404, {"message": "Not Found"})


# -- plugin -----------------------------------------------------------------------------------------------------
def _plugin(f: FakeDify, r: Seen, p: str) -> Any:
    installed = [{"plugin_id": PLUGIN_ID, "plugin_unique_identifier": f"{PLUGIN_ID}:{f.plugin_version}@abc",
                  "version": f.plugin_version}] if f.plugin_installed else []
    body = r.body or {}
    if p == "list/installations/ids" and r.method == "POST":
        return {"plugins": [x for x in installed if x["plugin_id"] in body.get("plugin_ids", [])]}
    if p == "list/latest-versions" and r.method == "POST":
        if not f.marketplace:
            return {"versions": {PLUGIN_ID: None}}
        return {"versions": {PLUGIN_ID: {"plugin_id": PLUGIN_ID, "version": "0.0.63",
                                         "unique_identifier": f"{PLUGIN_ID}:0.0.63@abc", "status": "active"}}}
    if p == "install/marketplace" and r.method == "POST":
        if not f.marketplace:
            raise err(400, "invalid_param", "marketplace is not enabled")
        task = f._new_id()
        f.tasks[task] = f.install_polls
        f.mutations += 1
        return {"all_installed": False, "task_id": task}
    m = re.match(r"^tasks/(?P<id>[^/]+)$", p)
    if m and r.method == "GET":
        left = f.tasks.get(m.group("id"))
        if left is None:
            raise err(404, "not_found", "task not found")
        if left > 0:
            f.tasks[m.group("id")] = left - 1
            status = "running"
        else:
            status, f.plugin_installed = "success", True
        return {"task": {"status": status, "total_plugins": 1, "completed_plugins": int(status == "success"),
                         "plugins": [{"plugin_id": PLUGIN_ID, "status": status, "message": ""}]}}
    raise Reply(404, {"message": "Not Found"})


# -- providers --------------------------------------------------------------------------------------------------
def _providers(f: FakeDify) -> list[dict[str, Any]]:
    other = {"provider": OTHER_PROVIDER, "label": {"en_US": "Ollama"}, "supported_model_types": ["llm"],
             "configurate_methods": ["customizable-model"], "model_credential_schema": None,
             "custom_configuration": {"status": "active", "custom_models": [
                 {"model": m, "model_type": "llm"} for p, m in f.other_models if p == OTHER_PROVIDER]}}
    out = [other]
    if f.plugins and not f.plugin_installed:
        return out
    custom = []
    for model, rec in f.records.items():
        item: dict[str, Any] = {"model": model, "model_type": "llm"}
        if f.creds_api:
            item.update(current_credential_id=rec.get("current"), current_credential_name=(
                f.creds[rec["current"]].name if rec.get("current") in f.creds else None),
                available_model_credentials=[{"credential_id": c.id, "credential_name": c.name}
                                             for c in f.creds.values() if c.model == model],
                unadded_to_model_list=False)
        custom.append(item)
    out.append({"provider": f.provider, "label": {"en_US": "OpenAI-API-compatible"},
                "supported_model_types": ["llm", "text-embedding"],
                "configurate_methods": ["customizable-model"], "model_credential_schema": f.schema,
                "custom_configuration": {"status": "active" if custom else "no-configure",
                                         "custom_models": custom, "can_added_models": []}})
    return out


def _active_llms(f: FakeDify) -> list[dict[str, Any]]:
    """``GET …/models/model-types/llm``: the active models, grouped by provider, in Dify's order."""
    out: list[dict[str, Any]] = []
    pairs = list(f.other_models) + [(f.provider, m) for m in f.records]
    for provider in dict.fromkeys(p for p, _ in pairs):
        models = [{"model": m, "model_type": "llm", "status": "active"} for p, m in pairs
                  if p == provider and _active(f, p, m)]
        if models:
            out.append({"provider": provider, "label": {"en_US": provider}, "status": "active", "models": models})
    return out


def _active(f: FakeDify, provider: str, model: str) -> bool:
    if (provider, model) in f.other_models:
        return True
    if provider != f.provider or model not in f.records:
        return False
    return not f.creds_api or f.records[model].get("current") in f.creds


# -- models -----------------------------------------------------------------------------------------------------
def _models(f: FakeDify, r: Seen, rest: str) -> Any:
    body = r.body or {}
    if rest == "/credentials/validate" and r.method == "POST":
        clean = f.check_schema(body.get("credentials") or {})
        problem = f.live_check(body.get("model", ""), clean)
        return {"result": "success"} if problem is None else {"result": "error", "error": problem}
    if rest == "/credentials" and r.method == "GET":
        return _read_credentials(f, r.query.get("model", ""))
    if r.method != "GET":
        f._need_admin(r)
    if rest == "" and r.method == "POST":
        return _post_models(f, body)
    if rest == "" and r.method == "DELETE":
        if f.records.pop(body.get("model"), None) is not None:
            f.mutations += 1
        raise Reply(204, None)
    if not f.creds_api:
        raise Reply(404, {"message": "Not Found"})
    if rest == "/credentials":
        return _credentials_write(f, r.method, body)
    if rest == "/credentials/switch" and r.method == "POST":
        cid = body.get("credential_id")
        if cid not in f.creds or f.creds[cid].model != body.get("model"):
            raise err(400, "invalid_param", "Credential record not found.")
        rec = f.records.setdefault(body["model"], {})
        if rec.get("current") == cid:
            raise err(400, "invalid_param", "Can't add same credential")
        rec["current"] = cid
        f.mutations += 1
        return {"result": "success"}
    raise Reply(404, {"message": "Not Found"})


def _shown(f: FakeDify, values: dict[str, str]) -> dict[str, str]:
    secret = {x["variable"] for x in f.schema["credential_form_schemas"] if x["type"] == "secret-input"}
    return {k: (obfuscate(v) if k in secret else v) for k, v in values.items()}


def _read_credentials(f: FakeDify, model: str) -> Any:
    rec = f.records.get(model)
    if not f.creds_api:
        return {"credentials": _shown(f, rec["values"]) if rec else None,
                "load_balancing": {"enabled": False, "configs": []}}
    current = f.creds.get((rec or {}).get("current", ""))
    return {"credentials": _shown(f, current.values) if current else {},
            "current_credential_id": current.id if current else None,
            "current_credential_name": current.name if current else None,
            "load_balancing": {"enabled": False, "configs": []},
            "available_credentials": [{"credential_id": c.id, "credential_name": c.name}
                                      for c in f.creds.values() if c.model == model]}


def _post_models(f: FakeDify, body: dict[str, Any]) -> Any:
    model = body.get("model")
    if f.creds_api:  # 1.8+: credentials are ignored; only switching by credential_id does something
        cid = body.get("credential_id")
        if cid in f.creds:
            f.records.setdefault(model, {})["current"] = cid
            f.mutations += 1
        return {"result": "success"}
    values = _merge_hidden(body.get("credentials") or {}, (f.records.get(model) or {}).get("values"))
    f.records[model] = {"values": f.validate(model, values)}
    f.mutations += 1
    return {"result": "success"}


def _merge_hidden(new: dict[str, Any], old: dict[str, str] | None) -> dict[str, Any]:
    return {k: ((old or {}).get(k, "") if v == HIDDEN else v) for k, v in new.items()}


def _credentials_write(f: FakeDify, method: str, body: dict[str, Any]) -> Any:
    model, name = body.get("model", ""), body.get("name")
    mine = [c for c in f.creds.values() if c.model == model]
    if name is not None and len(name) > 30:
        raise err(400, "invalid_param", "Credential name must be at most 30 characters.")
    if method == "POST":
        if name and any(c.name == name for c in mine):
            raise err(400, "invalid_param", f"Model credential with name '{name}' already exists for {model}.")
        values = f.validate(model, body.get("credentials") or {})
        cred = Cred(f._new_id(), model, name or f"API KEY {len(mine) + 1}", values)
        f.creds[cred.id] = cred
        if model not in f.records:
            f.records[model] = {"current": cred.id}
        f.mutations += 1
        raise Reply(201, {"result": "success"})
    cred = f.creds.get(body.get("credential_id", ""))
    if cred is None or cred.model != model:
        raise err(400, "invalid_param", "Credential record not found.")
    if method == "PUT":
        cred.values = f.validate(model, _merge_hidden(body.get("credentials") or {}, cred.values))
        if name:
            cred.name = name
        f.mutations += 1
        return {"result": "success"}
    if method == "DELETE":
        del f.creds[cred.id]
        rest = [c for c in f.creds.values() if c.model == model]
        if not rest:
            f.records.pop(model, None)
        elif f.records.get(model, {}).get("current") == cred.id:
            f.records[model]["current"] = rest[0].id
        f.mutations += 1
        raise Reply(204, None)
    raise Reply(405, {"message": "Method Not Allowed"})


# -- default model (with Dify's quirk) ----------------------------------------------------------------------------
def _default_model(f: FakeDify, r: Seen) -> Any:
    if r.method == "GET":
        rec = next((d for d in f.defaults if d["model_type"] == "text-generation"), None)
        if rec is None:
            candidates = list(f.other_models) + [(f.provider, m) for m in f.records if _active(f, f.provider, m)]
            if not candidates:
                return {"data": None}
            rec = {"model_type": "text-generation", "provider": candidates[0][0], "model": candidates[0][1]}
            f.defaults.append(rec)  # reading creates a properly typed record (a state change)
            f.mutations += 1
        # a record naming a deleted model is returned as it is: deleting a model never clears the default (§9)
        return {"data": {"model": rec["model"], "model_type": "llm",
                         "provider": {"provider": rec["provider"], "label": {"en_US": rec["provider"]}}}}
    if r.method == "POST":
        f._need_admin(r)
        for s in (r.body or {}).get("model_settings") or []:
            if not _active(f, s.get("provider"), s.get("model")):
                raise err(400, "invalid_param", f"Model {s.get('model')} does not exist.")
            rec = next((d for d in f.defaults if d["model_type"] == "text-generation"), None)
            if rec is None:  # the quirk: written as "llm", but reads look for "text-generation"
                f.defaults.append({"model_type": "llm", "provider": s["provider"], "model": s["model"]})
            else:
                rec.update(provider=s["provider"], model=s["model"])
            f.mutations += 1
        return {"result": "success"}
    raise Reply(405, {"message": "Method Not Allowed"})
