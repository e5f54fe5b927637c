"""Secrets and URLs made safe to show: the one place that masks tokens, passwords and ``user:password@`` parts.

* :class:`Secret` wraps a token, password or API key so ``str``/``repr``/f-strings never show it.
* :func:`mask_url` is how any URL is shown (``config show``, errors, logs): ``https://***@host/path``, no query.
* :func:`public_url` is how a URL is *stored* (the lock): no user info at all, no query, no trailing slash.
* :func:`scrub_userinfo` / :func:`redact_url` clean free text (a subprocess's stderr) of URL credentials.
* :func:`mask` renders a setting's value for output with all of the above applied.

Nothing here imports more than the standard library: every layer (config, lock, fetch, audit, serve, dify) uses it.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit, urlunsplit

MASK = "********"
_USERINFO = re.compile(r"([A-Za-z][\w+.-]*://)[^/\s?#]*@")


class Secret:
    """A secret value (token, password, API key) that never shows itself in str(), repr() or f-strings."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The real value; call this only where the secret is sent to the service it belongs to."""
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __str__(self) -> str:
        return MASK if self._value else ""

    def __repr__(self) -> str:
        return f"Secret('{MASK}')"

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)


def _split(url: str) -> Any:
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    return parts if parts.scheme and parts.netloc else None


def mask_url(url: str) -> str:
    """``url`` for display: ``user:password@`` becomes ``***@``; query and fragment (tokens live there) go.

    Text that is not a ``scheme://host`` URL (a path, an scp-like ``git@host:org/repo``) is returned as is, with
    any embedded URL credentials scrubbed.
    """
    parts = _split(url)
    if parts is None:
        return scrub_userinfo(url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def public_url(url: str) -> str:
    """``url`` without user:password, query, fragment or trailing slash: safe to store in the lock and to log."""
    parts = _split(url)
    if parts is None:
        try:
            urlsplit(url)
        except ValueError:
            return "<invalid url>"
        return url  # scp-like git address (git@host:org/repo) or a plain path: nothing secret in it
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, host, parts.path.rstrip("/") or "", "", ""))


def public_git_url(url: str) -> str:
    """A git remote as stored in the lock: like :func:`public_url`, but an SSH URL keeps its user name.

    ``ssh://git@host/org/repo`` stays as it is (the user is part of the address, as in ``git@host:org/repo``);
    a password (``ssh://git:pw@host/...``), query and fragment are dropped.
    """
    parts = _split(url)
    if parts is None or parts.scheme.lower() not in ("ssh", "git+ssh", "ssh+git") or "@" not in parts.netloc:
        return public_url(url)
    user = parts.netloc.rpartition("@")[0].split(":", 1)[0]
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, f"{user}@{host}" if user else host, parts.path.rstrip("/") or "", "", ""))


def scrub_userinfo(text: str) -> str:
    """``text`` with the ``user:password@`` part of every URL in it replaced by ``***@`` (for error messages)."""
    return _USERINFO.sub(r"\1***@", text)


def redact_url(text: str, url: str | None) -> str:
    """``text`` (e.g. a subprocess's error) without the secret parts of ``url``: user info, password, query."""
    text = scrub_userinfo(text)
    if not url:
        return text
    try:
        parts = urlsplit(url)
        secrets_in_url = [parts.query, parts.fragment, parts.password or ""]
    except ValueError:
        return text
    for secret in secrets_in_url:
        if secret:
            text = text.replace(secret, "***")
    return text


def mask(value: Any) -> Any:
    """A setting's value for output: secrets become ``********``, URLs lose their credentials (lists too)."""
    if isinstance(value, Secret):
        return str(value)
    if isinstance(value, str) and "://" in value:
        return mask_url(value) if _split(value) is not None else scrub_userinfo(value)
    if isinstance(value, list):
        return [mask(v) for v in value]
    return value


__all__ = ["MASK", "Secret", "mask", "mask_url", "public_git_url", "public_url", "redact_url", "scrub_userinfo"]
