"""What an endpoint says a model repository holds, independent of which API said it (Hub or ModelScope)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional
from urllib.parse import quote, urlsplit

from gptoss_cli.errors import UsageError
from gptoss_cli.lockfile import public_url
from gptoss_cli.redact import mask_url


@dataclass(frozen=True)
class RemoteFile:
    """One file of a remote snapshot. ``sha256`` comes from LFS/ModelScope metadata; ``git_oid`` is the blob id."""

    path: str
    size: int
    sha256: Optional[str] = None
    git_oid: Optional[str] = None
    xet: bool = False


@dataclass(frozen=True)
class RemoteSnapshot:
    """A repository at one commit, as listed by an endpoint. ``endpoint`` may carry credentials: never show it."""

    source: str  # "hf" | "modelscope"
    repo_id: str
    commit: str
    endpoint: str
    files: tuple[RemoteFile, ...]

    @property
    def public_endpoint(self) -> str:
        return public_url(self.endpoint)

    def file(self, path: str) -> Optional[RemoteFile]:
        return next((f for f in self.files if f.path == path), None)

    def url(self, path: str) -> str:
        """Where the bytes of ``path`` at this commit are served."""
        return file_url(self.source, self.endpoint, self.repo_id, self.commit, path)


def file_url(source: str, endpoint: str, repo_id: str, commit: str, path: str) -> str:
    base = endpoint.rstrip("/")
    if source == "modelscope":
        return (f"{base}/api/v1/models/{quote(repo_id, safe='/')}/repo?Revision={quote(commit, safe='')}"
                f"&FilePath={quote(path, safe='')}")
    return f"{base}/{quote(repo_id, safe='/')}/resolve/{quote(commit, safe='')}/{quote(path, safe='/')}"


def origin(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of ``url``; two URLs share an origin only if all three are equal."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    port = parts.port or {"http": 80, "https": 443}.get(scheme, 0)
    return scheme, (parts.hostname or "").lower(), port


def check_endpoint(url: str, what: str = "--endpoint") -> str:
    """``url`` if it is a usable ``http(s)://host[:port][/path]`` endpoint; UsageError (exit 2) otherwise."""
    try:
        parts = urlsplit(url)
        port_ok = parts.port is None or parts.port > 0
    except ValueError:
        parts, port_ok = None, False
    if parts is None or parts.scheme.lower() not in ("http", "https") or not parts.hostname or not port_ok:
        raise UsageError(f"{what} must be an http(s) URL such as https://hf-mirror.com, not {mask_url(url)!r}",
                         hint="scheme http or https, a host name, and a port between 1 and 65535")
    return url


def is_huggingface_co(endpoint: str) -> bool:
    host = origin(endpoint)[1]
    return host == "huggingface.co" or host.endswith(".huggingface.co")


__all__ = ["RemoteFile", "RemoteSnapshot", "check_endpoint", "file_url", "is_huggingface_co", "origin"]
