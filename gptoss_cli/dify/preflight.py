"""Preflight: check the endpoint the way Dify will, before touching Dify.

1. ``GET {endpoint}/models``: reachable? which model ids? a context length to register?
2. ``POST {endpoint}/chat/completions`` with Dify's own validation body (``max_tokens`` 5, one user message
   ``"ping"``, no ``stream`` key, Bearer only when a key is set); accepted like Dify accepts it: HTTP 200 and an
   ``object`` that is ``chat.completion`` or missing.

It also warns when the endpoint host is loopback, which Dify in Docker or on another machine cannot reach.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from gptoss_cli.config import Secret

_CONTEXT_KEYS = ("max_model_len", "context_length", "context_window", "max_context_length", "context_size")
_DOC_NETS = tuple(ipaddress.ip_network(n) for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24"))
PING_BODY_TEMPLATE = {"max_tokens": 5, "messages": [{"role": "user", "content": "ping"}]}


@dataclass(frozen=True)
class PreflightResult:
    endpoint_url: str
    reachable: bool
    models: tuple[str, ...] = ()
    served_model: str | None = None
    context_size: int | None = None
    models_ms: float | None = None
    chat_ms: float | None = None
    chat_ok: bool = False
    problem: str | None = None  # one line: why the endpoint would fail Dify's check (None when it passes)


def preflight(http: httpx.Client, endpoint_url: str, model_name: str, *, api_key: Secret | None = None,
              timeout: float = 120.0) -> PreflightResult:
    """Run both checks; never raises for endpoint problems (they are in ``problem``)."""
    headers = {"Accept": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key.reveal()}"
    limits = httpx.Timeout(timeout, connect=10.0)
    base = endpoint_url.rstrip("/")
    start = time.perf_counter()
    try:
        resp = http.get(base + "/models", headers=headers, timeout=limits)
    except httpx.HTTPError as exc:
        return PreflightResult(endpoint_url, reachable=False, problem=f"cannot reach {base}/models: {_why(exc)}")
    models_ms = _ms(start)
    ids, context = _read_models(resp)
    if resp.status_code == 401:
        return PreflightResult(endpoint_url, True, models_ms=models_ms,
                               problem="the endpoint wants an API key (HTTP 401 on /models)")
    served = model_name if (model_name in ids or not ids) else (ids[0] if len(ids) == 1 else model_name)
    body = {"model": served, **PING_BODY_TEMPLATE}
    start = time.perf_counter()
    try:
        chat = http.post(base + "/chat/completions", json=body, headers=headers, timeout=limits)
    except httpx.HTTPError as exc:
        return PreflightResult(endpoint_url, True, tuple(ids), served, context, models_ms,
                               problem=f"chat check failed: {_why(exc)}")
    chat_ms = _ms(start)
    problem = _judge_chat(chat)
    return PreflightResult(endpoint_url, True, tuple(ids), served, context, models_ms, chat_ms,
                           chat_ok=problem is None, problem=problem)


def _read_models(resp: httpx.Response) -> tuple[list[str], int | None]:
    if resp.status_code != 200:
        return [], None
    try:
        data = resp.json().get("data") or []
    except (ValueError, AttributeError):
        return [], None
    ids = [str(m["id"]) for m in data if isinstance(m, dict) and m.get("id")]
    for m in data:
        for key in _CONTEXT_KEYS:
            value = m.get(key) if isinstance(m, dict) else None
            if isinstance(value, int) and value > 0:
                return ids, value
    return ids, None


def _judge_chat(resp: httpx.Response) -> str | None:
    """Dify's acceptance rule for the validation call, with its failure wording."""
    if resp.status_code != 200:
        snippet = " ".join(resp.text.split())[:200]
        return f"chat check: status code {resp.status_code} and response body {snippet}"
    try:
        data: Any = resp.json()
    except ValueError:
        return "chat check: JSON decode error (the endpoint did not answer JSON)"
    obj = data.get("object") if isinstance(data, dict) else None
    if obj not in (None, "", "chat.completion"):
        return f"chat check: invalid response object {obj!r}, must be 'chat.completion'"
    return None


def _why(exc: Exception) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000.0, 1)


def is_loopback_host(host: str | None) -> bool:
    if not host:
        return False
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    return ip.is_loopback or ip.is_unspecified


def lan_address() -> str | None:
    """This machine's outbound LAN address (a UDP 'connect' sends no packet); None when unknown."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("192.0.2.1", 9))  # TEST-NET-1: never routed, nothing is sent
            addr = s.getsockname()[0]
    except OSError:
        return None
    ip = ipaddress.ip_address(addr)
    unusable = ip.is_loopback or ip.is_unspecified or any(ip in net for net in _DOC_NETS)
    return None if unusable else addr


def loopback_warning(endpoint_url: str, dify_url: str, *, lan: str | None = None) -> str | None:
    """A warning when Dify will not be able to reach a loopback endpoint, with the address to use instead."""
    ep = urlsplit(endpoint_url)
    if not is_loopback_host(ep.hostname):
        return None
    port = ep.port or (443 if ep.scheme == "https" else 80)
    lan_url = f"{ep.scheme}://{lan or '<this-machine-LAN-address>'}:{port}/v1"
    dify_host = urlsplit(dify_url).hostname
    if is_loopback_host(dify_host):
        return (f"endpoint host {ep.hostname} is loopback: if Dify runs in Docker (the usual install), localhost "
                f"inside its containers is the container itself; use {ep.scheme}://host.docker.internal:{port}/v1 "
                "(on Linux add extra_hosts host.docker.internal:host-gateway to the api and plugin_daemon "
                f"services) or {lan_url}, and run gptoss serve with --host 0.0.0.0")
    return (f"endpoint host {ep.hostname} is loopback but Dify runs on {dify_host}, which cannot reach this "
            f"machine's loopback; use {lan_url} and run gptoss serve with --host 0.0.0.0 and an API key")


__all__ = ["PreflightResult", "is_loopback_host", "lan_address", "loopback_warning", "preflight"]
