"""``fetch()``: code + weights + lock, end to end. The one function ``gptoss fetch`` calls.

Order: list the weights (fast fail on a bad endpoint or lock disagreement) → check free disk → clone the code →
download the weights in parallel → write ``DEST/gptoss.lock.json`` atomically. Only files whose hash matched are in
the lock. ``dry_run`` stops after listing and writes nothing.
"""

from __future__ import annotations

import errno
import shutil
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable, Optional

from gptoss_cli.dest import claim, inside
from gptoss_cli.errors import CouldNotRun, Interrupted, NetworkError, UsageError
from gptoss_cli.fetch.download import PARTIAL_DIRNAME, Downloader, FileOutcome, PlannedFile, part_name
from gptoss_cli.fetch.git import fetch_code, mirrored_url
from gptoss_cli.fetch.http import Requester, make_client
from gptoss_cli.fetch.lockwrite import build_lock, existing_lock, write_result
from gptoss_cli.fetch.offline import fetch_from_dir
from gptoss_cli.fetch.plan import bytes_needed, check_space, plan_from_remote, require_space
from gptoss_cli.fetch.remote import RemoteSnapshot, check_endpoint, is_huggingface_co
from gptoss_cli.fetch.types import CodeSpec, FetchOptions, FetchResult, Hooks, KernelResult, ModelResult, WeightsSpec
from gptoss_cli.lockfile import CODE_DIRNAME, MODEL_DIRNAME, Lock, public_url
from gptoss_cli.redact import public_git_url
from gptoss_cli.verify import ByteCounter

MAX_JOBS = 64  # parallel downloads; more only opens sockets a mirror will refuse


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


def _fetch_kernels(options: FetchOptions, requester: Requester, model_dir: Path, partial: Path,
                   hooks: Hooks) -> Optional[KernelResult]:
    """The native MXFP4 kernel repo (``options.kernels``) through the weights' endpoint, into
    ``model_dir/kernels/<name>/`` (gptoss_cli/kernels.py). A mirror without it is a note, not a failure: serve
    then runs the experts packed or dequantised."""
    from gptoss_cli.fetch.hub import hub_snapshot
    from gptoss_cli.kernels import kernel_folder

    assert options.kernels is not None and options.weights is not None
    repo_id, revision = options.kernels
    spec = options.weights
    try:
        snapshot = hub_snapshot(spec.endpoint, repo_id, revision, spec.token, wait=hooks.retry_wait)
    except NetworkError as exc:
        hooks.log(f"kernels: {exc.one_line()}; gptoss serve will run the MXFP4 experts without native kernels "
                  "(--no-kernels skips this step)")
        return None
    prefix = kernel_folder(Path("."), repo_id).as_posix() + "/"
    planned = [replace(p, path=prefix + p.path) for p in plan_from_remote(snapshot, include=("build/*",))]
    downloader = Downloader(requester, model_dir, partial, counter=ByteCounter(sum(p.size for p in planned)),
                            log=hooks.log, retry_wait=hooks.retry_wait)
    outcomes = tuple(downloader.run(planned, options.jobs))
    hooks.log(f"kernels: {repo_id}@{revision} ({snapshot.commit[:12]}), {len(outcomes)} files, sha256 checked")
    return KernelResult(repo_id, revision, snapshot.commit, snapshot.public_endpoint, outcomes,
                        sum(f.size for f in outcomes), sum(f.transferred for f in outcomes))


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
        return fetch_from_dir(options, hooks, started)
    model_dir, partial = dest / MODEL_DIRNAME, dest / PARTIAL_DIRNAME
    existing = existing_lock(dest, hooks.log)
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
            model = _model_result(snapshot, trust, tuple(outcomes))
        kernels = None
        if options.kernels is not None and options.weights is not None and options.weights.source == "hf":
            kernels = _fetch_kernels(options, requester, model_dir, partial, hooks)
        shutil.rmtree(partial, ignore_errors=True)
    return write_result(dest, existing, code, model, space, started, kernels)


__all__ = ["CodeSpec", "FetchOptions", "FetchResult", "Hooks", "ModelResult", "WeightsSpec", "apply_lock_defaults",
           "build_lock", "fetch"]
