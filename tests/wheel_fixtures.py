"""Real wheels without a package index: the distributions installed in this environment, packed back into wheels.

``repack(dist, out)`` writes ``name-version-tag.whl`` from the files the distribution's RECORD lists (byte code and
anything outside site-packages left out) with a fresh RECORD; pip installs it like any downloaded wheel.
``base_wheels(out)`` does that for everything gptoss-cli's base install needs (extras not followed), so a bundle
test can install gptoss into a fresh venv with no index at all.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import zipfile
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

_SKIP_INFO = {"RECORD", "INSTALLER", "REQUESTED", "direct_url.json"}


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def closure(requires: list[str]) -> list[metadata.Distribution]:
    """The installed distributions ``requires`` needs, with theirs (markers evaluated, requested extras followed)."""
    seen: dict[str, metadata.Distribution] = {}
    todo = [(Requirement(r), "") for r in requires]
    while todo:
        req, extra = todo.pop()
        if req.marker is not None and not req.marker.evaluate({"extra": extra}):
            continue
        key = canonicalize_name(req.name)
        if key in seen:
            continue
        dist = metadata.distribution(req.name)
        seen[key] = dist
        todo.extend((Requirement(r), e) for r in dist.requires or [] for e in ("", *req.extras))
    return list(seen.values())


def repack(dist: metadata.Distribution, out: Path) -> Path:
    name = canonicalize_name(dist.metadata["Name"]).replace("-", "_")
    version = dist.version
    info_dir = f"{name}-{version}.dist-info"
    wheel_meta = dist.read_text("WHEEL") or ""
    tags = [line.split(":", 1)[1].strip().split("-") for line in wheel_meta.splitlines() if line.startswith("Tag:")]
    tag = "-".join(".".join(dict.fromkeys(t[i] for t in tags)) for i in range(3)) if tags else "py3-none-any"
    path = out / f"{name}-{version}-{tag}.whl"
    rows = []
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for entry in dist.files or []:
            rel = Path(str(entry))
            if rel.parts[0] == ".." or "__pycache__" in rel.parts or rel.suffix == ".pyc":
                continue
            if rel.parts[0].endswith(".dist-info"):
                if rel.name in _SKIP_INFO:
                    continue
                arc = f"{info_dir}/{'/'.join(rel.parts[1:])}"
            else:
                arc = rel.as_posix()
            data = Path(str(dist.locate_file(entry))).read_bytes()
            zf.writestr(arc, data)
            rows.append((arc, _record_hash(data), str(len(data))))
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerows([*rows, (f"{info_dir}/RECORD", "", "")])
        zf.writestr(f"{info_dir}/RECORD", buf.getvalue())
    return path


def base_wheels(out: Path) -> list[Path]:
    """Wheels of every distribution gptoss-cli's base install needs (not gptoss itself), plus pip."""
    out.mkdir(parents=True, exist_ok=True)
    requires = [r for r in metadata.distribution("gptoss-cli").requires or [] if "extra ==" not in r]
    return [repack(d, out) for d in closure([*requires, "pip"])]


__all__ = ["base_wheels", "closure", "repack"]
