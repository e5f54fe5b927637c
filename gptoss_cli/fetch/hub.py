"""Hugging Face Hub metadata (revision → commit, file list with LFS sha256) through ``huggingface_hub.HfApi``.

The endpoint is always passed explicitly (``huggingface_hub`` reads ``HF_ENDPOINT`` once, at import). Only
metadata goes through ``huggingface_hub``; the bytes come through our own resumable downloader from
``{endpoint}/{repo}/resolve/{commit}/{path}``, over plain HTTP — so Xet (which mirrors break on) is never used.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any, Callable, Optional

from gptoss_cli import __version__
from gptoss_cli.config import Secret
from gptoss_cli.errors import NetworkError
from gptoss_cli.fetch.remote import RemoteFile, RemoteSnapshot
from gptoss_cli.lockfile import public_url

_COMMIT = re.compile(r"^[0-9a-f]{40}$")


def is_commit(revision: str) -> bool:
    return bool(_COMMIT.match(revision))


def _map_error(exc: Exception, endpoint: str, repo_id: str, revision: str) -> NetworkError:
    """Turn a huggingface_hub/httpx exception into one line that names the repo, never the token."""
    from huggingface_hub import errors as hf_errors

    where = f"{repo_id} on {public_url(endpoint)}"
    if isinstance(exc, hf_errors.GatedRepoError):
        return NetworkError(f"{where} is gated: access denied", hint="accept the terms on the Hub and pass --token")
    if isinstance(exc, hf_errors.RevisionNotFoundError):
        return NetworkError(f"revision {revision!r} not found in {where}", hint="check --revision")
    if isinstance(exc, hf_errors.RepositoryNotFoundError):
        return NetworkError(f"repository {where} not found (or private)",
                            hint="check --model and --endpoint; pass --token for private repositories")
    if isinstance(exc, hf_errors.OfflineModeIsEnabled):
        return NetworkError("HF_HUB_OFFLINE is set: cannot list the repository",
                            hint="unset HF_HUB_OFFLINE, or use --from-dir / --no-weights")
    if isinstance(exc, hf_errors.HfHubHTTPError):
        status = getattr(getattr(exc, "response", None), "status_code", None)
        return NetworkError(f"{public_url(endpoint)} answered HTTP {status} for {repo_id}",
                            hint="check --endpoint and --token")
    if isinstance(exc, json.JSONDecodeError):  # a 200 answer that is not JSON: a portal, a login page, a file server
        return NetworkError(f"{public_url(endpoint)} is not a Hugging Face Hub API: it answered something other "
                            f"than JSON for {repo_id}",
                            hint="check --endpoint: a mirror's API root, e.g. https://hf-mirror.com")
    return NetworkError(f"cannot reach {public_url(endpoint)}: {type(exc).__name__}",
                        hint="check the endpoint/mirror URL, proxy variables and network")


def _retryable(exc: Exception) -> bool:
    from huggingface_hub import errors as hf_errors

    if isinstance(exc, (hf_errors.RepositoryNotFoundError, hf_errors.RevisionNotFoundError,
                        hf_errors.OfflineModeIsEnabled)):
        return False
    if isinstance(exc, hf_errors.HfHubHTTPError):
        status = getattr(getattr(exc, "response", None), "status_code", None)
        return status in (408, 429, 500, 502, 503, 504)
    return exc.__class__.__module__.split(".")[0] in ("httpx", "httpx2", "httpcore", "ssl", "socket") or isinstance(
        exc, OSError)


def _call(fn: Callable[[], Any], endpoint: str, repo_id: str, revision: str, retries: int, wait: float) -> Any:
    for attempt in range(retries + 1):
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001 - every client error is mapped to one line below
            if attempt < retries and _retryable(exc):
                time.sleep(wait * (2 ** attempt))
                continue
            raise _map_error(exc, endpoint, repo_id, revision) from None
    raise AssertionError("unreachable")  # pragma: no cover


def hub_snapshot(
    endpoint: str,
    repo_id: str,
    revision: str,
    token: Optional[Secret] = None,
    *,
    retries: int = 3,
    wait: float = 0.5,
) -> RemoteSnapshot:
    """Resolve ``revision`` to a commit and list every file of ``repo_id`` at that commit."""
    from huggingface_hub import HfApi

    endpoint = endpoint.rstrip("/")
    api = HfApi(endpoint=endpoint, token=token.reveal() if token else False,
                library_name="gptoss-cli", library_version=__version__)
    if is_commit(revision):
        commit = revision
    else:
        info = _call(lambda: api.repo_info(repo_id, revision=revision, repo_type="model"),
                     endpoint, repo_id, revision, retries, wait)
        commit = info.sha
        if not commit or not is_commit(commit):
            raise NetworkError(f"{public_url(endpoint)} returned no commit for {repo_id}@{revision}")
    entries = _call(lambda: list(api.list_repo_tree(repo_id, revision=commit, recursive=True, repo_type="model")),
                    endpoint, repo_id, revision, retries, wait)
    files = []
    for entry in entries:
        if not hasattr(entry, "size"):  # RepoFolder
            continue
        lfs = getattr(entry, "lfs", None)
        files.append(RemoteFile(
            path=entry.path,
            size=int(entry.size),
            sha256=(lfs.sha256.lower() if lfs is not None and lfs.sha256 else None),
            git_oid=(entry.blob_id.lower() if entry.blob_id and lfs is None else None),
            xet=bool(getattr(entry, "xet_hash", None)),
        ))
    return RemoteSnapshot(source="hf", repo_id=repo_id, commit=commit, endpoint=endpoint,
                          files=tuple(sorted(files, key=lambda f: f.path)))


__all__ = ["hub_snapshot", "is_commit"]
