"""Run the stages of an :class:`~gptoss_cli.up.plan.UpPlan` by calling the same core functions the standalone
commands call, record each result in DEST's state, and stop at the first failure.

Idempotence, stage by stage:

* fetch: skipped when DEST's lock names what the config asks for (model repo, a pinned commit, the code URL) and
  every file verifies against it ("verified N files against the lock"); otherwise the real fetch runs, and it
  resumes (finished files are kept, partial ones continue).
* verify: the hashes from the fetch check are the proof when fetch was skipped (never hashed twice); after a real
  fetch the model is re-hashed.
* audit: skipped when the last audit of this DEST was clean, for the same inputs (code commit, requirement files,
  service, ignore list, fail-on: a fingerprint), and is younger than ``up.audit_max_age`` hours. Advisories are
  published every day, so an old clean result is checked again; a failed or incomplete one always is.
* serve: a server of this DEST that is running and answers ``/ready`` is reused.
* register: ``dify-register`` upserts, so running it again updates the same model (the result says "updated").
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from gptoss_cli.errors import CheckFailed, CouldNotRun, GptossError
from gptoss_cli.up import records
from gptoss_cli.up import server as srv
from gptoss_cli.up.plan import DONE, FAILED, SKIPPED, STAGE_ORDER, StageResult, UpPlan, UpResult, not_run
from gptoss_cli.up.state import StageRecord, age_seconds, read_state, record_quietly


@dataclass(frozen=True)
class UpHooks:
    """Observers: ``stage(name)`` as a stage starts, ``done(result)`` as it ends, plus the stages' own progress."""

    stage: Callable[[str], None] = lambda _name: None
    done: Callable[[StageResult], None] = lambda _result: None
    fetch: Optional[Callable[[], Any]] = None  # makes the gptoss_cli.fetch.Hooks, once the fetch stage started
    verify_progress: Optional[Callable[[int, int], None]] = None
    step: Callable[[str], None] = lambda _msg: None  # audit and register steps
    log: Callable[[str], None] = lambda _msg: None


@dataclass
class _Run:
    plan: UpPlan
    hooks: UpHooks
    verified: Any = None  # the VerifyResult of the fetch check, when it proved the files
    fetched: bool = False
    server: Optional[srv.ServerInfo] = None
    proc: Any = None  # the Popen of a server started by this run
    results: list = field(default_factory=list)
    recorded: set = field(default_factory=set)  # stages whose record this run already wrote

    def remember(self, rec: StageRecord) -> None:
        self.recorded.add(rec.stage)
        _remember(self.plan.dest, rec)


def run_up(plan: UpPlan, hooks: UpHooks = UpHooks()) -> tuple[UpResult, Any]:
    """Run every stage in order; returns the result and the server child this run started (or None)."""
    run = _Run(plan, hooks)
    steps = {"fetch": _fetch, "verify": _verify, "audit": _audit, "serve": _serve, "register": _register}
    off = {s.name: s for s in plan.describe() if s.status == "off"}
    for i, name in enumerate(STAGE_ORDER):
        if name in off:
            run.results.append(off[name])
            hooks.done(off[name])
            continue
        hooks.stage(name)
        started = time.monotonic()
        try:
            result = steps[name](run)
        except GptossError as exc:
            result = StageResult(name, FAILED, exc.message, exit_code=exc.exit_code,
                                 next=_next(name, exc))
            if name not in run.recorded:  # a check that ran (verify, audit) recorded its own result
                run.remember(records.failure(name, exc.exit_code, exc.one_line()))
        except BaseException:  # Ctrl-C, or a bug: never leave a server behind that nobody supervises
            _cleanup(run)
            raise
        result = StageResult(**{**result.to_dict(), "seconds": time.monotonic() - started})
        run.results.append(result)
        try:
            hooks.done(result)
        except BaseException:
            _cleanup(run)
            raise
        if result.status == FAILED:
            if name == "register" and run.proc is not None and not plan.serve.detach:
                _cleanup(run)  # the foreground server is this run's: it stops with it
            for skipped in not_run(STAGE_ORDER[i + 1:]):
                run.results.append(skipped)
                hooks.done(skipped)
            break
    return UpResult(plan.dest, tuple(run.results), server=run.server), run.proc


def _next(stage: str, exc: GptossError) -> str:
    first = exc.hint or {"fetch": "check the endpoint and --dest", "verify": "rerun to repair the files",
                         "audit": "review the findings", "serve": "see `gptoss logs`",
                         "register": "check the Dify options"}[stage]
    return f"{first}; then rerun `gptoss up` (finished stages are skipped)"


def _remember(dest: Path, rec: StageRecord) -> None:
    record_quietly(dest if Path(dest).is_dir() else None, rec)


# -- fetch ----------------------------------------------------------------------------------------------------------

def fetch_check(plan: UpPlan, progress: Any = None) -> tuple[bool, str, Any]:
    """Whether DEST already holds what the plan asks for: (done, why, the VerifyResult when files were hashed)."""
    from gptoss_cli.lockfile import LOCK_NAME, LockError, read_lock
    from gptoss_cli.redact import public_url
    from gptoss_cli.verify import verify_lock

    dest, f = Path(plan.dest), plan.fetch
    try:
        lock = read_lock(dest / LOCK_NAME)
    except LockError as exc:
        return False, exc.message, None
    w = f.weights
    if w is not None and f.from_dir is None and plan.bundle is None:  # an import brings its own lock
        if lock.model is None or lock.model.repo_id != w.repo_id:
            return False, f"the lock has {lock.model.repo_id if lock.model else 'no model'}, not {w.repo_id}", None
        if _is_sha(w.revision) and lock.model.commit != w.revision:
            return False, f"the lock pins {lock.model.commit[:12]}, not {w.revision[:12]}", None
    if f.code is not None and plan.bundle is None:
        if lock.code is None or not (dest / "code").is_dir():
            return False, "no code checkout in DEST", None
        moved = _is_sha(f.code.ref) and f.code.ref != lock.code.commit
        if public_url(lock.code.url) != public_url(f.code.url) or moved:
            return False, f"the lock's code is {public_url(lock.code.url)} @ {lock.code.commit[:12]}", None
        head = _git_head(dest / "code")
        if head is not None and head != lock.code.commit:
            return False, f"code/ is at {head[:12]}, the lock says {lock.code.commit[:12]}", None
    if f.pinned is not None and _hashes(f.pinned) != _hashes(lock):
        return False, "DEST's lock differs from --lock", None
    if not plan.verify:
        return True, f"lock present ({len(lock.files)} files; not re-hashed: --no-verify)", None
    result = verify_lock(dest / LOCK_NAME, model_dir=dest / "model", jobs=plan.verify_jobs, progress=progress)
    if not result.ok:
        return False, f"the files do not match the lock ({result.summary()}): repairing", result
    return True, f"verified {len(result.files)} files against the lock", result


def _hashes(lock: Any) -> set[tuple[str, str]]:
    return {(x.path, x.sha256) for x in lock.files}


def _git_head(folder: Path) -> Optional[str]:
    """The commit checked out in ``folder`` (None when git cannot say: then the lock is trusted)."""
    import subprocess

    try:
        done = subprocess.run(["git", "-C", str(folder), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def _is_sha(value: Optional[str]) -> bool:
    return bool(value) and len(value) in (40, 64) and all(c in "0123456789abcdef" for c in value)


def _fetch(run: _Run) -> StageResult:
    from gptoss_cli.fetch import Hooks, fetch

    plan = run.plan
    done, why, verified = fetch_check(plan, run.hooks.verify_progress)
    if done:
        run.verified = verified
        lock = _lock_summary(plan.dest)
        return StageResult("fetch", SKIPPED, why, data={**lock, "verified": verified is not None})
    run.hooks.log(f"fetch: {why}")
    if plan.bundle is not None:
        return _import_bundle(run, why)
    result = fetch(plan.fetch, run.hooks.fetch() if run.hooks.fetch else Hooks())
    run.fetched = True
    rec = records.fetch_record(result)
    run.remember(rec)
    return StageResult("fetch", DONE, rec.summary, data={**rec.data, "reason": why})


def _import_bundle(run: _Run, why: str) -> StageResult:
    """``--bundle``: check every file of the bundle, then import its DEST (the software is already installed here:
    no pip); the verify stage then re-hashes the imported model against the bundle's lock."""
    from gptoss_cli.bundle import install_bundle

    plan = run.plan
    assert plan.bundle is not None
    done = install_bundle(plan.bundle, plan.dest, skip_pip=True, log=run.hooks.log)
    run.fetched = True
    summary = f"imported the bundle {plan.bundle} ({done.files_checked} files checked)"
    return StageResult("fetch", DONE, summary, data={**_lock_summary(plan.dest), "bundle": str(plan.bundle),
                                                     "files_checked": done.files_checked, "reason": why})


def _lock_summary(dest: Path) -> dict[str, Any]:
    from gptoss_cli.lockfile import LOCK_NAME, read_lock

    lock = read_lock(Path(dest) / LOCK_NAME)
    return {"lock": str(Path(dest) / LOCK_NAME), "files": len(lock.files), "total_bytes": lock.total_size,
            "repo_id": lock.model.repo_id if lock.model else None, "commit": lock.model.commit if lock.model else None,
            "code_commit": lock.code.commit if lock.code else None}


# -- verify ---------------------------------------------------------------------------------------------------------

def _verify(run: _Run) -> StageResult:
    from gptoss_cli.verify import verify_lock

    plan = run.plan
    result = run.verified
    how = "hashed by the fetch check" if result is not None else "re-hashed"
    if result is None:
        result = verify_lock(Path(plan.dest) / "gptoss.lock.json", model_dir=Path(plan.dest) / "model",
                             jobs=plan.verify_jobs, progress=run.hooks.verify_progress)
    rec = records.verify_record(result)
    run.remember(rec)
    if not result.ok:
        raise CheckFailed(f"verify failed: {result.summary()}", hint="run `gptoss verify` for the files")
    status = SKIPPED if run.verified is not None else DONE
    return StageResult("verify", status, f"{result.summary()} ({how}, {records.size(result.bytes_hashed)})", data=rec.data)


# -- audit ----------------------------------------------------------------------------------------------------------

def _audit(run: _Run) -> StageResult:
    from dataclasses import replace

    from gptoss_cli.audit import run_audit
    plan = run.plan
    request = replace(plan.audit, progress=run.hooks.step)
    commit = records.code_commit(plan.dest)
    wanted = records.fingerprint(records.audit_inputs(request, commit))
    last = read_state(plan.dest).get("audit")
    if last is not None and last.ok and last.data.get("fingerprint") == wanted:
        age = age_seconds(last.at)
        if 0 <= age < plan.audit_max_age_s:
            return StageResult("audit", SKIPPED, f"clean for the same inputs {age / 60:.0f} min ago "
                                                 f"({last.summary})", data={**last.data, "at": last.at})
    report = run_audit(request)
    rec = records.audit_record(report, request, commit)
    run.remember(rec)
    if report.outcome == "vulnerable":
        raise CheckFailed(rec.summary, hint="upgrade to the fix versions (`gptoss audit` lists them), or "
                                            "--ignore-vuln ID after review, or --no-audit")
    if report.outcome == "incomplete":
        raise CouldNotRun(f"audit incomplete: {rec.summary}", hint="run `gptoss audit` for what was not checked")
    return StageResult("audit", DONE, rec.summary, data=rec.data)


# -- serve ----------------------------------------------------------------------------------------------------------

def _serve(run: _Run) -> StageResult:
    launch = run.plan.serve
    dest = run.plan.dest
    existing = srv.current(dest)
    if existing is not None and existing.running and existing.ready:
        if launch.model_name and existing.model != launch.model_name:
            raise CouldNotRun(f"the server of this DEST (pid {existing.pid}) serves {existing.model}, not "
                              f"{launch.model_name}", hint="`gptoss stop` it so that up starts the one configured")
        run.server = existing
        return StageResult("serve", SKIPPED, f"already running (pid {existing.pid}) and ready at "
                                             f"{existing.url}", data=existing.to_dict())
    if existing is not None and existing.running:
        raise CouldNotRun(f"a server of this DEST (pid {existing.pid}) is running but not ready at {existing.url}",
                          hint="wait for it to load, or `gptoss stop` it")
    log_from = srv.log_size(dest)
    proc = srv.spawn(dest, launch.argv, detach=launch.detach, env=launch.env)
    run.proc = proc
    try:
        event = srv.wait_ready(dest, proc, launch.ready_timeout, log_from=log_from)
    except BaseException:
        _cleanup(run)
        raise
    info = srv.info_from_event(event, proc, launch.model_dir, detached=launch.detach,
                               log=srv.log_path(dest) if launch.detach else None)
    srv.write_pid(dest, info)
    run.server = info
    how = f"detached, log {info.log}" if launch.detach else "foreground"
    run.remember(StageRecord("serve", True, 0, f"{info.model} ({info.engine}) at {info.url}", data=info.to_dict()))
    return StageResult("serve", DONE, f"ready: {info.model} ({info.engine}) at {info.url} (pid {info.pid}, {how})",
                       data=info.to_dict())


def _cleanup(run: _Run) -> None:
    """Stop the child this run started (interrupted, or failed before the run could hand it over)."""
    proc, run.proc = run.proc, None
    if proc is not None:
        srv.terminate(run.plan.dest, proc)


# -- register -------------------------------------------------------------------------------------------------------

def _register(run: _Run) -> StageResult:
    from dataclasses import replace

    import httpx

    from gptoss_cli import __version__
    from gptoss_cli.dify import DifyClient, register

    plan = run.plan.register
    opts = plan.options
    if opts.endpoint_url is None:
        if run.server is None:
            raise CouldNotRun("no endpoint to register: nothing is served", hint="give dify.endpoint_url")
        opts = replace(opts, endpoint_url=run.server.url)
        if "://127.0.0.1:" in run.server.url or "://[::1]:" in run.server.url:
            run.hooks.log(f"registering {run.server.url}: Dify in Docker cannot reach this host's loopback; "
                          "set dify.endpoint_url to the address its containers use")
    timeout = httpx.Timeout(plan.timeout, connect=10.0)
    with httpx.Client(timeout=timeout, verify=not plan.insecure, follow_redirects=False,
                      headers={"User-Agent": f"gptoss/{__version__}"}) as http:
        result = register(DifyClient(http, plan.dify_url), opts, progress=run.hooks.step)
    rec = records.register_record(result)
    run.remember(rec)
    return StageResult("register", DONE, rec.summary, data={**rec.data, "warnings": list(result.warnings)})


__all__ = ["UpHooks", "fetch_check", "run_up"]
