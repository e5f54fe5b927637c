"""ModelScope metadata through a small httpx client (two documented-by-use routes, no SDK).

Why not the ``modelscope`` package: it pulls in ``requests``, ``modelscope-hub``, tqdm and more (hundreds of
files) for two GET requests, keeps its own cache layout, and its downloader cannot share our resume,
hash-while-streaming and token-origin rules. The API it talks to is small and stable:

* ``GET {E}/api/v1/models/{id}/repo/files?Revision={rev}&Recursive=True`` →
  ``{"Code": 200, "Data": {"Files": [{"Path", "Name", "Type": "blob"|"tree", "Size", "Sha256", "Revision", ...}]}}``
* ``GET {E}/api/v1/models/{id}/repo?Revision={commit}&FilePath={path}`` → the bytes (``Range`` honoured).

ModelScope lists a SHA-256 for every file, so every file gets ``hash_source = "modelscope"``.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

from gptoss_cli.errors import NetworkError
from gptoss_cli.fetch.http import Requester
from gptoss_cli.fetch.hub import is_commit
from gptoss_cli.fetch.remote import RemoteFile, RemoteSnapshot
from gptoss_cli.lockfile import public_url

DEFAULT_MODEL = "openai-mirror/gpt-oss-20b"
DEFAULT_REVISION = "master"
DEFAULT_ENDPOINT = "https://www.modelscope.cn"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def normalize_endpoint(value: str) -> str:
    """``MODELSCOPE_DOMAIN`` holds a bare host (``www.modelscope.cn``); endpoints need a scheme."""
    value = value.strip().rstrip("/")
    return value if "://" in value else f"https://{value}"


def _files(payload: Any, where: str) -> list[dict[str, Any]]:
    if not isinstance(payload, dict):
        raise NetworkError(f"{where}: unexpected answer (not a JSON object)")
    code = payload.get("Code")
    if code not in (200, "200", None) or payload.get("Success") is False:
        message = str(payload.get("Message") or "error")[:200]
        raise NetworkError(f"{where}: ModelScope answered Code {code}: {message}")
    data = payload.get("Data") or {}
    files = data.get("Files") if isinstance(data, dict) else None
    if not isinstance(files, list):
        raise NetworkError(f"{where}: answer has no Data.Files list")
    return [f for f in files if isinstance(f, dict)]


def modelscope_snapshot(requester: Requester, repo_id: str, revision: str, *, wait: float = 0.5) -> RemoteSnapshot:
    """List every file of ``repo_id`` at ``revision`` and pin the commit ModelScope reports for it."""
    endpoint = requester.endpoint.rstrip("/")
    url = (f"{endpoint}/api/v1/models/{quote(repo_id, safe='/')}/repo/files"
           f"?Revision={quote(revision, safe='')}&Recursive=True")
    where = f"{repo_id}@{revision} on {public_url(endpoint)}"
    entries = _files(requester.get_json(url, wait=wait), where)
    files: list[RemoteFile] = []
    commits: set[str] = set()
    for entry in entries:
        if entry.get("Type") == "tree":
            continue
        path = entry.get("Path") or entry.get("Name")
        size = entry.get("Size")
        if not isinstance(path, str) or isinstance(size, bool) or not isinstance(size, int):
            raise NetworkError(f"{where}: malformed file entry {str(entry)[:120]}")
        sha = str(entry.get("Sha256") or "").lower()
        files.append(RemoteFile(path=path, size=size, sha256=sha if _SHA256.match(sha) else None))
        rev = str(entry.get("Revision") or "")
        if is_commit(rev):
            commits.add(rev)
    # ModelScope tags each file with the commit it was listed at; one value means we can pin downloads to it.
    commit = commits.pop() if len(commits) == 1 else revision
    return RemoteSnapshot(source="modelscope", repo_id=repo_id, commit=commit, endpoint=endpoint,
                          files=tuple(sorted(files, key=lambda f: f.path)))


__all__ = ["DEFAULT_ENDPOINT", "DEFAULT_MODEL", "DEFAULT_REVISION", "modelscope_snapshot", "normalize_endpoint"]
