"""The state record of each result, the same whether ``gptoss up`` or a standalone command produced it."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from gptoss_cli.up.state import StageRecord

if TYPE_CHECKING:
    from gptoss_cli.audit import AuditReport, AuditRequest
    from gptoss_cli.dify import RegisterResult
    from gptoss_cli.fetch import FetchResult
    from gptoss_cli.verify import VerifyResult


def size(n: float) -> str:
    """``1087834`` → ``1.1 MB`` (decimal units, as ``gptoss fetch`` prints them)."""
    value = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if abs(value) < 1000:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"


def failure(stage: str, exit_code: int, message: str, **data: Any) -> StageRecord:
    return StageRecord(stage, False, exit_code, message, data=data)


def fetch_record(result: "FetchResult") -> StageRecord:
    data: dict[str, Any] = {"lock": str(result.lock_path) if result.lock_path else None}
    parts = []
    if result.model is not None:
        m = result.model
        data.update(repo_id=m.repo_id, commit=m.commit, endpoint=m.endpoint, files=len(m.files),
                    total_bytes=m.total_bytes, transferred_bytes=m.transferred_bytes)
        parts.append(f"{m.repo_id}@{m.commit[:12]}: {len(m.files)} files, {size(m.transferred_bytes)} transferred")
    if result.code is not None:
        data.update(code_url=result.code.url, code_commit=result.code.commit)
        parts.append(f"code @ {result.code.commit[:12]}")
    return StageRecord("fetch", True, 0, "; ".join(parts) or "fetched", data=data)


def verify_record(result: "VerifyResult") -> StageRecord:
    d = result.to_dict()
    return StageRecord("verify", result.ok, 0 if result.ok else 1, result.summary(),
                       data={"counts": d["counts"], "bytes_hashed": result.bytes_hashed,
                             "seconds": d["seconds"], "lock": d["lock"], "model_dir": d["model_dir"]})


def audit_inputs(request: "AuditRequest", code_commit: Optional[str]) -> dict[str, Any]:
    """What decides an audit's result, apart from the advisory data itself (which changes daily)."""
    return {
        "code_commit": code_commit, "code_dir": str(request.code_dir) if request.code_dir else None,
        "requirement_files": [_file_digest(p) for p in request.requirement_files],
        "env": request.include_env, "service": request.service, "osv_url": request.osv_url,
        "osv_db": _file_digest(request.osv_db) if request.osv_db else None,
        "ignore": sorted(request.ignore_vulns), "fail_on": request.fail_on, "resolve": request.resolve,
    }


def fingerprint(inputs: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()


def _file_digest(path: Path) -> str:
    try:
        st = Path(path).stat()
        return f"{path}:{st.st_size}:{st.st_mtime_ns}"
    except OSError:
        return f"{path}:missing"


def audit_record(report: "AuditReport", request: "AuditRequest", code_commit: Optional[str]) -> StageRecord:
    from gptoss_cli.audit.formats import headline

    s = report.summary()
    return StageRecord("audit", report.outcome == "clean", report.exit_code, headline(report), data={
        "outcome": report.outcome, "vulnerabilities": s["vulnerabilities"], "packages_checked": s["packages_checked"],
        "service": report.service.name, "fingerprint": fingerprint(audit_inputs(request, code_commit))})


def register_record(result: "RegisterResult") -> StageRecord:
    ok = not result.dry_run
    return StageRecord("register", ok, 0, f"{result.model}: {result.action} in Dify {result.dify_version} at "
                                          f"{result.dify_url}", data={
        "dify_url": result.dify_url, "dify_version": result.dify_version, "model": result.model,
        "action": result.action, "endpoint_url": result.endpoint_url, "provider": result.provider,
        "default": result.default_state == "set",
        "default_model": result.default_model})


def code_commit(dest: Path) -> Optional[str]:
    """The code commit DEST's lock records (None without a lock or code)."""
    from gptoss_cli.lockfile import LOCK_NAME, LockError, read_lock

    try:
        lock = read_lock(Path(dest) / LOCK_NAME)
    except LockError:
        return None
    return lock.code.commit if lock.code else None


__all__ = ["audit_inputs", "audit_record", "code_commit", "failure", "fetch_record", "fingerprint",
           "register_record", "size", "verify_record"]
