"""``fetch()``: code + weights + lock, end to end. The one function ``gptoss fetch`` calls.

Order: list the weights (fast fail on a bad endpoint or lock disagreement) → check free disk → clone the code →
download the weights in parallel → write ``DEST/gptoss.lock.json`` atomically. Only files whose hash matched are in
the lock. ``dry_run`` stops after listing and writes nothing.
"""

from __future__ import annotations

import errno
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Optional

from gptoss_cli.config import Secret
from gptoss_cli.dest import claim, inside
from gptoss_cli.errors import CouldNotRun, Interrupted, UsageError
from gptoss_cli.fetch.download import PARTIAL_DIRNAME, Downloader, FileOutcome, PlannedFile, part_name
from gptoss_cli.fetch.git import CodeResult, GitProgressFn, SshOptions, fetch_code, mirrored_url
from gptoss_cli.fetch.http import Requester, make_client
from gptoss_cli.fetch.plan import SpaceCheck, bytes_needed, check_space, plan_from_remote, require_space
from gptoss_cli.fetch.remote import RemoteSnapshot, check_endpoint, is_huggingface_co
from gptoss_cli.lockfile import (CODE_DIRNAME, LOCK_NAME, MODEL_DIRNAME, CodePin, Lock, LockedFile, LockError,
                                 ModelPin, public_url, read_lock, write_lock)
from gptoss_cli.redact import public_git_url
from gptoss_cli.verify import ByteCounter, ProgressFn

MAX_JOBS = 64  # parallel downloads; more only opens sockets a mirror will refuse


@dataclass(frozen=True)
class CodeSpec:
    url: str = "https://github.com/openai/gpt-oss"
    ref: Optional[str] = None
    mirror: Optional[str] = None
    ssh: Optional[SshOptions] = None  # key, GIT_SSH_COMMAND, GIT_SSH (used for SSH URLs)


@dataclass(frozen=True)
class WeightsSpec:
    source: str = "hf"
    repo_id: str = "openai/gpt-oss-20b"
    revision: str = "main"
    endpoint: str = "https://huggingface.co"
    token: Optional[Secret] = None
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    allow_pickle: bool = False


@dataclass(frozen=True)
class FetchOptions:
    dest: Path
    code: Optional[CodeSpec] = field(default_factory=CodeSpec)
    weights: Optional[WeightsSpec] = field(default_factory=WeightsSpec)
    pinned: Optional[Lock] = None  # --lock: expected hashes (and default pins) from a lock made earlier
    from_dir: Optional[Path] = None
    jobs: int = 8
    dry_run: bool = False


@dataclass(frozen=True)
class Hooks:
    """Observers: ``log`` for one-line notes, ``progress(done, total)`` by bytes, ``git(stage, cur, max)``,
    ``file_done(path, files_done, files_total)`` as each downloaded file is complete."""

    log: Callable[[str], None] = lambda _m: None
    progress: Optional[ProgressFn] = None
    git: Optional[GitProgressFn] = None
    file_done: Callable[[str, int, int], None] = lambda _path, _done, _total: None
    retry_wait: float = 0.5  # first back-off after a transient failure (doubles each try)


@dataclass(frozen=True)
class ModelResult:
    source: str
    repo_id: str
    commit: str
    endpoint: str  # public: no credentials
    trust: str  # "lock" (hashes from --lock) | "endpoint" (hashes from the endpoint's metadata) | "from-dir"
    files: tuple[FileOutcome, ...]
    total_bytes: int
    transferred_bytes: int


@dataclass(frozen=True)
class FetchResult:
    dest: Path
    dry_run: bool
    lock_path: Optional[Path]
    code: Optional[CodeResult]
    code_plan: Optional[dict]
    model: Optional[ModelResult]
    space: Optional[SpaceCheck]
    seconds: float


def apply_lock_defaults(code: Optional[CodeSpec], weights: Optional[WeightsSpec], pinned: Lock, *,
                        url_given: bool, ref_given: bool, model_given: bool,
                        revision_given: bool) -> tuple[Optional[CodeSpec], Optional[WeightsSpec]]:
    """With ``--lock``, what the user did not say explicitly comes from the lock (code commit, model commit)."""
    if code is not None and pinned.code is not None:
        if not url_given:
            code = replace(code, url=pinned.code.url)
        if not ref_given and (not url_given or code.url == pinned.code.url):
            code = replace(code, ref=pinned.code.commit)
    model = pinned.model
    if weights is not None and model is not None and model.source == weights.source:
        if not model_given:
            weights = replace(weights, repo_id=model.repo_id)
        if not revision_given and weights.repo_id == model.repo_id:
            weights = replace(weights, revision=model.commit)
    return code, weights


def _existing_lock(dest: Path, log: Callable[[str], None]) -> Optional[Lock]:
    if not (dest / LOCK_NAME).is_file():
        return None
    try:
        return read_lock(dest / LOCK_NAME)
    except LockError as exc:
        log(f"ignoring the existing lock: {exc.one_line()}")
        return None


def _snapshot(spec: WeightsSpec, requester: Requester, log: Callable[[str], None], wait: float) -> RemoteSnapshot:
    if spec.source == "modelscope":
        from gptoss_cli.fetch.modelscope import modelscope_snapshot

        return modelscope_snapshot(requester, spec.repo_id, spec.revision, wait=wait)
    if spec.source != "hf":
        raise UsageError(f"unknown --source {spec.source!r}", hint="use hf or modelscope")
    from gptoss_cli.fetch.hub import hub_snapshot

    if not is_huggingface_co(spec.endpoint):
        log(f"endpoint {public_url(spec.endpoint)} is not huggingface.co: Xet disabled, "
            "files are downloaded over plain HTTP (/resolve/) with resume and sha256 checks")
    return hub_snapshot(spec.endpoint, spec.repo_id, spec.revision, spec.token, wait=wait)


def _planned_outcomes(planned: tuple[PlannedFile, ...], model_dir: Path, partial: Path) -> tuple[FileOutcome, ...]:
    out = []
    for pf in planned:
        target = model_dir / pf.path
        if target.is_file() and target.stat().st_size == pf.size:
            action = "present"
        elif (partial / part_name(pf)).is_file():
            action = "resume"
        else:
            action = "download"
        out.append(FileOutcome(pf.path, pf.size, pf.sha256, pf.hash_source, action))
    return tuple(out)


def _model_result(snapshot: RemoteSnapshot, trust: str, files: tuple[FileOutcome, ...]) -> ModelResult:
    return ModelResult(snapshot.source, snapshot.repo_id, snapshot.commit, snapshot.public_endpoint, trust, files,
                       sum(f.size for f in files), sum(f.transferred for f in files))


def _code_plan(spec: CodeSpec) -> dict:
    return {"url": public_git_url(spec.url), "ref": spec.ref,
            "via": public_git_url(mirrored_url(spec.url, spec.mirror))}


def fetch(options: FetchOptions, hooks: Hooks = Hooks()) -> FetchResult:
    """Fetch code and/or weights into ``options.dest`` and write the lock; see the module docstring.

    Raises UsageError (exit 2) for bad options, CouldNotRun subclasses (exit 3) for network, integrity, git,
    disk and file-system failures, and Interrupted (exit 130) for Ctrl-C. Partial downloads stay in
    ``DEST/.gptoss-partial`` for the next run.
    """
    try:
        return _fetch(options, hooks)
    except KeyboardInterrupt:
        raise Interrupted("interrupted", hint="rerun the same command to resume: finished files and partial "
                                              "downloads are kept in DEST") from None
    except OSError as exc:
        where = exc.filename or options.dest
        reason = "disk full" if exc.errno == errno.ENOSPC else (exc.strerror or type(exc).__name__)
        raise CouldNotRun(f"cannot write {where}: {reason}",
                          hint="check permissions and free space of --dest, then rerun to resume") from None


def _fetch(options: FetchOptions, hooks: Hooks) -> FetchResult:
    started = time.perf_counter()
    if not 1 <= options.jobs <= MAX_JOBS:
        raise UsageError(f"--jobs must be between 1 and {MAX_JOBS}, not {options.jobs}")
    if options.code is None and options.weights is None and options.from_dir is None:
        raise UsageError("nothing to fetch: --no-code and --no-weights together")
    if options.weights is not None and options.from_dir is None:
        check_endpoint(options.weights.endpoint)
    if options.dry_run:  # writes nothing: no lock, no folder
        return _fetch_into(options, hooks, started)
    with claim(options.dest, "fetch"):  # one writer per DEST; a failed run removes the folders it created
        return _fetch_into(options, hooks, started)


def _fetch_into(options: FetchOptions, hooks: Hooks, started: float) -> FetchResult:
    dest = Path(options.dest)
    for sub in (MODEL_DIRNAME, PARTIAL_DIRNAME, CODE_DIRNAME):
        inside(dest, dest / sub)  # never write through a symlink that leaves DEST
    if options.from_dir is not None:
        from gptoss_cli.fetch.offline import fetch_from_dir

        return fetch_from_dir(options, hooks, started)
    model_dir, partial = dest / MODEL_DIRNAME, dest / PARTIAL_DIRNAME
    existing = _existing_lock(dest, hooks.log)
    with make_client(options.jobs) as client:
        snapshot = planned = None
        if options.weights is not None:
            spec = options.weights
            requester = Requester(client, spec.endpoint, spec.token)
            snapshot = _snapshot(spec, requester, hooks.log, hooks.retry_wait)
            planned = plan_from_remote(snapshot, include=spec.include, exclude=spec.exclude,
                                       pinned=options.pinned, allow_pickle=spec.allow_pickle)
        trust = "lock" if options.pinned is not None else "endpoint"
        space = check_space(dest, bytes_needed(planned, model_dir, partial)) if planned else None
        if options.dry_run:
            model = _model_result(snapshot, trust, _planned_outcomes(planned, model_dir, partial)) if planned else None
            code_plan = _code_plan(options.code) if options.code else None
            return FetchResult(dest, True, None, None, code_plan, model, space, time.perf_counter() - started)
        if space is not None:
            require_space(dest, space.needed)
        dest.mkdir(parents=True, exist_ok=True)
        code = None
        if options.code is not None:
            if options.code.mirror:
                hooks.log(f"git: {public_url(options.code.mirror)} stands in for {public_url('https://github.com/')}"
                          " (this process only)")
            code = fetch_code(options.code.url, dest / CODE_DIRNAME, ref=options.code.ref,
                              mirror=options.code.mirror, progress=hooks.git, ssh=options.code.ssh)
        model = None
        if planned:
            counter = ByteCounter(sum(p.size for p in planned), hooks.progress)
            downloader = Downloader(requester, model_dir, partial, counter=counter, log=hooks.log,
                                    on_file=hooks.file_done, retry_wait=hooks.retry_wait)
            outcomes = downloader.run(list(planned), options.jobs)
            shutil.rmtree(partial, ignore_errors=True)
            model = _model_result(snapshot, trust, tuple(outcomes))
    lock = build_lock(existing, code, model)
    lock_path = write_lock(dest, lock)
    return FetchResult(dest, False, lock_path, code, None, model, space, time.perf_counter() - started)


def build_lock(existing: Optional[Lock], code: Optional[CodeResult], model: Optional[ModelResult]) -> Lock:
    """The new lock: fetched parts replace, untouched parts are kept from DEST's existing lock."""
    code_pin = CodePin(code.url, code.commit) if code is not None else (existing.code if existing else None)
    if model is not None:
        model_pin = ModelPin(model.source, model.repo_id, model.commit, model.endpoint)
        files = tuple(LockedFile(f.path, f.size, f.sha256 or "", f.hash_source) for f in model.files)
    else:
        model_pin = existing.model if existing else None
        files = existing.files if existing else ()
    return Lock(code=code_pin, model=model_pin, files=files)


__all__ = ["CodeSpec", "FetchOptions", "FetchResult", "Hooks", "ModelResult", "WeightsSpec", "apply_lock_defaults",
           "build_lock", "fetch"]
