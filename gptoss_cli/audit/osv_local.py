"""A local OSV export (the PyPI ``all.zip``, a folder of OSV JSON records, or one JSON file) and version matching
that follows the OSV schema, for air-gapped audits.

Matching rules (``record_affects``):

* records with ``withdrawn`` set never match;
* only ``affected`` entries whose package is in the ``PyPI`` ecosystem and whose name is the same after PEP 503
  normalisation are considered;
* an explicit ``versions`` list matches by PEP 440 equality;
* ``ECOSYSTEM`` ranges are evaluated in PEP 440 order: the events are sorted by version and swept — ``introduced``
  (``"0"`` = before every version, pre-releases included) opens, ``fixed`` closes at that version, ``last_affected``
  closes after it, ``limit`` closes at it. ``GIT`` and ``SEMVER`` ranges are ignored (they never appear for PyPI);
* conservative where the data is broken, never a silent "clean": an unparseable ``introduced`` counts as ``"0"``,
  a range with no ``introduced`` starts at ``"0"``, an entry with neither ``versions`` nor ``ranges`` affects every
  version;
* a local version (``1.5+cu121``) is compared by its public part (``1.5``): a local build is a rebuild of that
  release, and advisories never list local versions.
"""

from __future__ import annotations

import json
import threading
import zipfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from gptoss_cli.errors import CouldNotRun, UsageError

EXPORT_URL = "https://osv-vulnerabilities.storage.googleapis.com/PyPI/all.zip"
_CACHE_SIZE = 256


def _version(text: Any) -> Version | None:
    try:
        return Version(str(text))
    except InvalidVersion:
        return None


def _comparable(v: Version) -> Version:
    return Version(v.public) if v.local else v


def _in_versions(listed: Any, query: Version) -> bool:
    if not isinstance(listed, list):
        return False
    public = _comparable(query)
    for item in listed:
        candidate = _version(item)
        if candidate is not None and (candidate == query or _comparable(candidate) == public):
            return True
    return False


def _events(raw: Any) -> list[tuple[int, Version | None, str]]:
    """(rank, version, kind) sorted for the sweep; rank 0 = the special lowest version ``"0"``."""
    out: list[tuple[int, Version | None, str]] = []
    for event in raw if isinstance(raw, list) else []:
        if not isinstance(event, dict):
            continue
        for kind in ("introduced", "fixed", "last_affected", "limit"):
            if kind not in event:
                continue
            value = str(event[kind])
            parsed = _version(value)
            if kind == "introduced" and (value == "0" or parsed is None):
                out.append((0, None, kind))  # "0", or unparseable: affected from the start (never a silent clean)
            elif parsed is not None:
                out.append((1, _comparable(parsed), kind))
    order = {"introduced": 0, "last_affected": 1, "fixed": 2, "limit": 2}
    out.sort(key=lambda e: (e[0], e[1] or Version("0"), order[e[2]]))
    if not any(kind == "introduced" for _, _, kind in out):
        out.insert(0, (0, None, "introduced"))
    return out


def _in_range(events: Any, query: Version) -> bool:
    v = _comparable(query)
    affected = False
    for rank, bound, kind in _events(events):
        if kind == "introduced":
            if rank == 0 or (bound is not None and v >= bound):
                affected = True
        elif bound is None:
            continue
        elif kind in ("fixed", "limit") and v >= bound:
            affected = False
        elif kind == "last_affected" and v > bound:
            affected = False
    return affected


def record_affects(record: dict[str, Any], name: str, version: str) -> bool:
    """Whether the OSV ``record`` says ``name`` (any spelling) at ``version`` is affected."""
    if record.get("withdrawn"):
        return False
    query = _version(version)
    if query is None:
        return False
    wanted = canonicalize_name(name)
    for affected in record.get("affected") or []:
        if not isinstance(affected, dict):
            continue
        package = affected.get("package") if isinstance(affected.get("package"), dict) else {}
        ecosystem = str(package.get("ecosystem", "")).split(":")[0]
        if ecosystem != "PyPI" or canonicalize_name(str(package.get("name", ""))) != wanted:
            continue
        versions, ranges = affected.get("versions"), affected.get("ranges")
        if not versions and not ranges:
            return True
        if _in_versions(versions, query):
            return True
        for rng in ranges if isinstance(ranges, list) else []:
            if isinstance(rng, dict) and rng.get("type") == "ECOSYSTEM" and _in_range(rng.get("events"), query):
                return True
    return False


def _pypi_names(record: dict[str, Any]) -> set[str]:
    names = set()
    for affected in record.get("affected") or []:
        package = affected.get("package") if isinstance(affected, dict) else None
        if isinstance(package, dict) and str(package.get("ecosystem", "")).split(":")[0] == "PyPI":
            names.add(canonicalize_name(str(package.get("name", ""))))
    return names


@dataclass(frozen=True)
class OsvDbInfo:
    path: Path
    records: int
    packages: int
    withdrawn: int
    unreadable: int
    newest_modified: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "records": self.records, "packages": self.packages,
                "withdrawn": self.withdrawn, "unreadable": self.unreadable, "newest_modified": self.newest_modified}


class OsvDatabase:
    """An index of PyPI records (package name → record keys); records are re-read on demand, a few cached."""

    def __init__(self, path: Path, reader: Callable[[str], bytes], keys: Iterator[str],
                 close: Callable[[], None] | None = None) -> None:
        self.path = path
        self._read = reader
        self._close = close
        self._by_name: dict[str, list[str]] = {}
        self._by_id: dict[str, str] = {}
        self._cache: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._lock = threading.Lock()
        withdrawn = unreadable = 0
        newest: str | None = None
        for key in keys:
            record = self._parse(key)
            if record is None:
                unreadable += 1
                continue
            names = _pypi_names(record)
            if not names:
                continue
            self._by_id[str(record.get("id", key))] = key
            withdrawn += 1 if record.get("withdrawn") else 0
            modified = record.get("modified")
            if isinstance(modified, str) and (newest is None or modified > newest):
                newest = modified
            for name in names:
                self._by_name.setdefault(name, []).append(key)
        self.info = OsvDbInfo(path, len(self._by_id), len(self._by_name), withdrawn, unreadable, newest)

    def close(self) -> None:
        if self._close is not None:
            self._close()
            self._close = None

    def __enter__(self) -> "OsvDatabase":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _parse(self, key: str) -> dict[str, Any] | None:
        try:
            record = json.loads(self._read(key))
        except (OSError, ValueError, KeyError, zipfile.BadZipFile):
            return None
        return record if isinstance(record, dict) else None

    def record(self, key: str) -> dict[str, Any] | None:
        with self._lock:  # the loopback server answers from several threads
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
            record = self._parse(key)
            if record is not None:
                self._cache[key] = record
                if len(self._cache) > _CACHE_SIZE:
                    self._cache.popitem(last=False)
            return record

    def query(self, name: str, version: str) -> list[dict[str, Any]]:
        """Every non-withdrawn record that affects ``name`` at ``version``."""
        out = []
        for key in self._by_name.get(canonicalize_name(name), []):
            record = self.record(key)
            if record is not None and record_affects(record, name, version):
                out.append(record)
        return out

    def get(self, vuln_id: str) -> dict[str, Any] | None:
        key = self._by_id.get(vuln_id)
        return self.record(key) if key is not None else None


def load_osv_db(path: Path) -> OsvDatabase:
    """Open ``path`` (zip export, folder of ``*.json``, or one ``.json`` file holding a record or a list).

    Raises UsageError when the path does not exist, CouldNotRun when it holds no readable PyPI records — an empty
    database would otherwise make every package look clean.
    """
    path = Path(path)
    if not path.exists():
        raise UsageError(f"--osv-db {path} does not exist", hint=f"download {EXPORT_URL}")
    try:
        db = _open(path)
    except (OSError, zipfile.BadZipFile, ValueError) as exc:
        raise CouldNotRun(f"cannot read OSV database {path}: {exc}", hint=f"download a fresh {EXPORT_URL}") from None
    if db.info.records == 0:
        db.close()
        raise CouldNotRun(f"OSV database {path} holds no PyPI advisories ({db.info.unreadable} unreadable files)",
                          hint=f"use the PyPI export {EXPORT_URL}")
    return db


def _open(path: Path) -> OsvDatabase:
    if path.is_dir():
        files = sorted(str(p.relative_to(path)) for p in path.rglob("*.json") if p.is_file())
        return OsvDatabase(path, lambda key: (path / key).read_bytes(), iter(files))
    if zipfile.is_zipfile(path):
        archive = zipfile.ZipFile(path)
        names = [n for n in archive.namelist() if n.endswith(".json")]
        try:
            return OsvDatabase(path, archive.read, iter(names), archive.close)
        except BaseException:
            archive.close()
            raise
    data = json.loads(path.read_bytes())
    records = data if isinstance(data, list) else [data]
    blobs = {str(i): json.dumps(r).encode() for i, r in enumerate(records)}
    return OsvDatabase(path, blobs.__getitem__, iter(blobs))
