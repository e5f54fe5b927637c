"""The HTTP client for downloads and the ModelScope API: redirects followed by hand so the token stays home.

A ``Bearer`` token is attached only to requests whose origin (scheme, host, port) equals the endpoint's origin.
Redirects to another origin (a CDN, a Xet bridge, a mirror's storage) are followed without it, and a redirect from
https to http never carries it either, because the scheme is part of the origin.
"""

from __future__ import annotations

import time
from typing import Callable, Mapping, Optional
from urllib.parse import urljoin

import httpx

from gptoss_cli import __version__
from gptoss_cli.config import Secret
from gptoss_cli.errors import NetworkError
from gptoss_cli.fetch.remote import origin
from gptoss_cli.lockfile import public_url

REDIRECTS = (301, 302, 303, 307, 308)
RETRY_STATUS = (408, 429, 500, 502, 503, 504)
MAX_REDIRECTS = 8


class RetryableError(Exception):
    """A failure worth another try (connection reset, timeout, 5xx). The message never holds secrets."""


def make_client(jobs: int = 8, timeout: float = 60.0, transport: Optional[httpx.BaseTransport] = None) -> httpx.Client:
    """One pooled client for all download threads (httpx.Client is thread-safe)."""
    return httpx.Client(
        timeout=httpx.Timeout(timeout, connect=min(timeout, 15.0)),
        follow_redirects=False,
        limits=httpx.Limits(max_connections=jobs + 4, max_keepalive_connections=jobs + 4),
        headers={"User-Agent": f"gptoss-cli/{__version__}", "Accept-Encoding": "identity"},
        transport=transport,
    )


class Requester:
    """Sends requests for one endpoint: token only to that endpoint's origin, redirects followed by hand."""

    def __init__(self, client: httpx.Client, endpoint: str, token: Optional[Secret] = None) -> None:
        self.client = client
        self.endpoint = endpoint
        self.token = token
        self._origin = origin(endpoint)

    def _headers(self, url: str, extra: Optional[Mapping[str, str]]) -> dict[str, str]:
        headers = dict(extra or {})
        if self.token and origin(url) == self._origin:
            headers["Authorization"] = f"Bearer {self.token.reveal()}"
        return headers

    def open(self, url: str, headers: Optional[Mapping[str, str]] = None) -> httpx.Response:
        """GET ``url`` as a stream (caller closes it). Transport errors and 5xx/429 raise RetryableError."""
        for _ in range(MAX_REDIRECTS + 1):
            request = self.client.build_request("GET", url, headers=self._headers(url, headers))
            try:
                response = self.client.send(request, stream=True)
            except httpx.TransportError as exc:
                raise RetryableError(f"{type(exc).__name__} from {public_url(url)}") from None
            if response.status_code in REDIRECTS and "location" in response.headers:
                response.close()
                url = urljoin(url, response.headers["location"])
                continue
            if response.status_code in RETRY_STATUS:
                response.close()
                raise RetryableError(f"HTTP {response.status_code} from {public_url(url)}")
            return response
        raise NetworkError(f"too many redirects from {public_url(url)}")

    def get_json(self, url: str, retries: int = 3, wait: float = 0.5) -> object:
        """GET a small JSON document, with retries on transient failures; NetworkError on anything else."""
        def once() -> object:
            response = self.open(url, {"Accept": "application/json"})
            try:
                response.read()
            except httpx.TransportError as exc:
                raise RetryableError(f"{type(exc).__name__} from {public_url(url)}") from None
            finally:
                response.close()
            if response.status_code != 200:
                raise http_error(response.status_code, url)
            try:
                return response.json()
            except ValueError:
                raise NetworkError(f"{public_url(url)} did not answer JSON") from None

        return with_retries(once, retries=retries, wait=wait)


def http_error(status: int, url: str) -> NetworkError:
    shown = public_url(url)
    if status in (401, 403):
        return NetworkError(f"access denied (HTTP {status}) by {shown}",
                            hint="gated or private repository? pass --token or set HF_TOKEN")
    if status == 404:
        return NetworkError(f"not found (HTTP 404): {shown}", hint="check --model, --revision and --endpoint")
    return NetworkError(f"HTTP {status} from {shown}")


def with_retries(fn: Callable[[], object], *, retries: int, wait: float,
                 sleep: Callable[[float], None] = time.sleep) -> object:
    """Run ``fn``; on RetryableError wait ``wait * 2**attempt`` and try again, ``retries`` times at most."""
    for attempt in range(retries + 1):
        try:
            return fn()
        except RetryableError as exc:
            if attempt == retries:
                raise NetworkError(f"giving up after {retries + 1} tries: {exc}",
                                   hint="check the endpoint/mirror and your network, then rerun to resume") from None
            sleep(wait * (2 ** attempt))
    raise AssertionError("unreachable")  # pragma: no cover


__all__ = ["RETRY_STATUS", "Requester", "RetryableError", "http_error", "make_client", "with_retries"]
