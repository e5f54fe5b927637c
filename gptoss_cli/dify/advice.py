"""Dify's refusals, turned into one line with Dify's reason and what to do about it.

The Docker/loopback hint is given only here, when Dify's own check of a loopback endpoint failed: a Dify running
natively on the same host validates ``http://127.0.0.1:8000/v1`` fine and gets no warning.
"""

from __future__ import annotations

from gptoss_cli.dify import console
from gptoss_cli.dify.client import DifyClient
from gptoss_cli.dify.errors import CredentialsRejectedError, DifyError, PluginMissingError
from gptoss_cli.dify.preflight import lan_address, loopback_warning
from gptoss_cli.serve.openai.no_reasoning import NO_REASONING_PREFIX

_VALIDATION_MARKERS = ("credentials validation", "validation failed", "invalid response object", "json decode")


def translate(exc: DifyError, endpoint: str | None, client: DifyClient) -> DifyError:
    """Dify's 400 on a credential write → one line with Dify's reason and what to do about it."""
    text = exc.message.lower()
    if exc.status == 400 and "does not exist" in text and "provider" in text:
        return PluginMissingError(exc.message, hint=console.HOW_TO_INSTALL)
    if exc.status == 400 and any(m in text for m in _VALIDATION_MARKERS):
        return CredentialsRejectedError(f"Dify could not validate the endpoint: {exc.message}",
                                        hint=advice(exc.message, endpoint, client), status=400, code=exc.code)
    return exc


def advice(reason: str, endpoint: str | None, client: DifyClient) -> str:
    text = reason.lower()
    if "status code 401" in text or "api key" in text:
        return "the server wants an API key: pass --server-api-key-env VAR naming the key gptoss serve uses"
    if "status code 404" in text and endpoint and NO_REASONING_PREFIX + "/" in endpoint:
        return f"the endpoint has no {NO_REASONING_PREFIX} mount (--hide-reasoning needs gptoss serve there)"
    if "status code 404" in text:
        return "check that --endpoint-url ends in /v1 and --model-name matches an id from /v1/models"
    if "status code 5" in text:
        return "the server failed or is still loading: check gptoss serve (GET /health) and its log"
    if "invalid response object" in text or "json decode" in text:
        return "the URL does not point at an OpenAI-compatible server; point --endpoint-url at gptoss's /v1"
    if "should be string" in text or "is required" in text or "not in options" in text:
        return "this Dify/plugin version expects other credential fields; please report it"
    near = loopback_warning(endpoint, client.base_url, lan=lan_address()) if endpoint else None
    if near:
        return "Dify cannot reach the endpoint: " + near
    return ("Dify cannot reach the endpoint from its containers: make gptoss serve listen on an address Dify can "
            "reach (--host 0.0.0.0) and check firewalls")


__all__ = ["advice", "translate"]
