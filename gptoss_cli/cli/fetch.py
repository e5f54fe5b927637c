"""``gptoss fetch``: code (git) + weights (Hub / mirror / ModelScope / offline copy) + ``gptoss.lock.json``."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Iterator, Optional

import typer
from rich.console import Console

from gptoss_cli.cli._complete import offer
from gptoss_cli.cli._errors import boundary
from gptoss_cli.cli._options import DestOpt, output_for, settings_for
from gptoss_cli.cli._output import Output
from gptoss_cli.cli._progress import Tasks, human_size
from gptoss_cli.cli._state import remember
from gptoss_cli.config import Settings
from gptoss_cli.errors import UsageError

if TYPE_CHECKING:
    from typing import Any, Callable

    from gptoss_cli.fetch import FetchOptions, FetchResult, Hooks

_Opt = typer.Option
SOURCES = ("hf", "modelscope")  # --source (fetch.source)


@contextlib.contextmanager
def fetch_progress(out: Output) -> Iterator[Hooks]:
    """The core's hooks, rendered on stderr: weights by bytes (with files done), git stages by objects."""
    from gptoss_cli.fetch import Hooks

    with Tasks(out) as tasks:
        def on_file(path: str, done: int, total: int) -> None:
            tasks.note("weights", f"{done}/{total} files")
            out.detail(f"gptoss: {path}: complete, sha256 checked ({done}/{total})")

        def on_git(stage: str, current: int, maximum: Optional[int]) -> None:
            tasks.update(f"git {stage}", current, maximum, unit="objects")

        yield Hooks(log=lambda m: out.info(f"gptoss: {m}"), progress=lambda d, t: tasks.update("weights", d, t),
                    git=on_git, file_done=on_file)


def _token(settings: Settings, source: str, log: Callable[[str], None]) -> Any:
    """The Hub token under the trust rule (gptoss_cli/trust.py); HF_TOKEN never goes to ModelScope."""
    from gptoss_cli.config import hf_login_token
    from gptoss_cli.trust import announce, endpoint_credential

    hf = source == "hf"
    endpoint_key = "fetch.endpoint" if hf or settings.source("fetch.endpoint") == "flag" else \
        "fetch.modelscope_endpoint"
    for note in announce(settings, (endpoint_key,)):
        log(note)
    if not hf and settings.source("fetch.token") != "flag":
        return None  # HF_TOKEN belongs to the Hub: never hand it to ModelScope unless --token says so
    credential = endpoint_credential(settings, endpoint_key=endpoint_key, token_key="fetch.token",
                                     fallback=hf_login_token if hf else None)
    for note in credential.notes:
        log(note)
    return credential.token


def _kernel_spec(kernels: Optional[bool], weights: Any, from_dir: Optional[Path]) -> Optional[tuple[str, str]]:
    """The kernel repo to fetch with the weights: on by default for openai/gpt-oss-* from a Hub endpoint."""
    from gptoss_cli.kernels import wanted_kernel

    hub = weights is not None and weights.source == "hf" and from_dir is None
    if kernels is False or not hub or (kernels is None and not weights.repo_id.startswith("openai/gpt-oss")):
        return None
    repo_id, version = wanted_kernel()
    return repo_id, f"v{version}"


def build_options(settings: Settings, *, no_code: bool, no_weights: bool, dry_run: bool,
                  from_dir: Optional[Path], log: Callable[[str], None] = lambda _m: None,
                  kernels: Optional[bool] = None) -> "FetchOptions":
    """Settings (flag > env > file > default) → core options; with --lock, unspecified pins come from the lock."""
    from gptoss_cli.config import git_ssh_environment
    from gptoss_cli.fetch import CodeSpec, FetchOptions, WeightsSpec, apply_lock_defaults
    from gptoss_cli.fetch.git import SshOptions
    from gptoss_cli.fetch import modelscope as ms
    from gptoss_cli.lockfile import read_lock
    from gptoss_cli.trust import announce

    source = settings["fetch.source"]
    if source not in SOURCES:
        raise UsageError(f"--source must be hf or modelscope, not {source!r}")
    given = {k: settings.source(k) != "default" for k in ("fetch.model", "fetch.revision", "fetch.repo_url",
                                                         "fetch.ref", "fetch.endpoint")}
    repo_id, revision, endpoint = settings["fetch.model"], settings["fetch.revision"], settings["fetch.endpoint"]
    if source == "modelscope":
        repo_id = repo_id if given["fetch.model"] else ms.DEFAULT_MODEL
        revision = revision if given["fetch.revision"] else ms.DEFAULT_REVISION
        endpoint = endpoint if settings.source("fetch.endpoint") == "flag" else settings["fetch.modelscope_endpoint"]
        endpoint = ms.normalize_endpoint(endpoint)
    token = _token(settings, source, log) if not no_weights and from_dir is None else None
    if not no_code:
        for note in announce(settings, ("fetch.repo_url", "fetch.git_mirror", "fetch.ssh_key")):
            log(note)
    ssh = SshOptions(settings.get("fetch.ssh_key"), *git_ssh_environment())
    code = None if no_code else CodeSpec(settings["fetch.repo_url"], settings.get("fetch.ref"),
                                         settings.get("fetch.git_mirror"), ssh)
    weights = None if no_weights else WeightsSpec(
        source=source, repo_id=repo_id, revision=revision, endpoint=endpoint.rstrip("/"),
        token=token, include=tuple(settings["fetch.include"] or ()),
        exclude=tuple(settings["fetch.exclude"] or ()), allow_pickle=bool(settings["fetch.allow_pickle"]))
    pinned = read_lock(settings["fetch.lock"]) if settings.get("fetch.lock") else None
    if pinned is not None:
        code, weights = apply_lock_defaults(code, weights, pinned, url_given=given["fetch.repo_url"],
                                            ref_given=given["fetch.ref"], model_given=given["fetch.model"],
                                            revision_given=given["fetch.revision"])
    return FetchOptions(dest=Path(settings["fetch.dest"]), code=code, weights=weights, pinned=pinned,
                        from_dir=from_dir, jobs=settings["fetch.jobs"], dry_run=dry_run,
                        kernels=_kernel_spec(kernels, weights, from_dir))


def render(result: "FetchResult", console: Console, out: Optional[Output] = None) -> None:
    out = out or Output()
    model = result.model
    if model is not None:
        title = f"{model.repo_id}@{out.short(model.commit, 12)} from {model.endpoint} (hashes: {model.trust})"
        table = out.table("file", "size", "action", "hash source", title=("dry run: " if result.dry_run else "") + title)
        for f in model.files:
            table.add_row(f.path, human_size(f.size), f.action, f.hash_source)
        console.print(table)
        console.print(f"total {human_size(model.total_bytes)} in {len(model.files)} files"
                      + (f", {human_size(model.transferred_bytes)} transferred" if not result.dry_run else ""))
    if result.space is not None and result.dry_run:
        verdict = "ok" if result.space.enough else "NOT ENOUGH"
        console.print(f"disk: need {human_size(result.space.needed)}, {human_size(result.space.free)} free "
                      f"at {result.space.path} ({verdict})")
    if result.code is not None:
        console.print(f"code: {result.code.url} @ {result.code.commit} ({result.code.action}) → {result.code.path}")
    elif result.code_plan is not None:
        plan = result.code_plan
        console.print(f"code: would clone {plan['url']} at {plan['ref'] or 'default branch'} via {plan['via']}")
    if result.kernels is not None:
        k = result.kernels
        console.print(f"kernels: {k.repo_id}@{k.revision} ({out.short(k.commit, 12)}), {len(k.files)} files, "
                      f"{human_size(k.total_bytes)} → model/kernels/ (serve loads them offline)")
    if result.lock_path is not None:
        console.print(f"lock: {result.lock_path}")


@boundary
def fetch(
    ctx: typer.Context,
    repo_url: Annotated[Optional[str], _Opt("--repo-url", help="Git URL of the code: https://, "
                                            "ssh://user@host/path or user@host:path (default: "
                                            "https://github.com/openai/gpt-oss).", show_default=False)] = None,
    ref: Annotated[Optional[str], _Opt("--ref", help="Branch, tag or commit of the code (a full SHA is verified).")
                   ] = None,
    git_mirror: Annotated[Optional[str], _Opt("--git-mirror", help="Replaces https://github.com/ for git, e.g. "
                                              "https://ghfast.top/https://github.com/ or https://kkgithub.com/.")
                          ] = None,
    ssh_key: Annotated[Optional[Path], _Opt("--ssh-key", help="Private key for an SSH --repo-url (ssh -i FILE -o "
                                            "IdentitiesOnly=yes); ssh never prompts (BatchMode=yes).")] = None,
    model: Annotated[Optional[str], _Opt("--model", help="Model repo id (default: openai/gpt-oss-20b; "
                                         "openai-mirror/gpt-oss-20b with --source modelscope).")] = None,
    revision: Annotated[Optional[str], _Opt("--revision", help="Model branch, tag or commit (default: main; "
                                            "master with --source modelscope).")] = None,
    endpoint: Annotated[Optional[str], _Opt("--endpoint", help="HF-compatible endpoint or mirror (HF_ENDPOINT), "
                                            "or the ModelScope endpoint with --source modelscope.")] = None,
    source: Annotated[Optional[str], _Opt("--source", autocompletion=offer(SOURCES),
                                          help="Weights from hf (Hub or mirror) or modelscope.")] = None,
    include: Annotated[Optional[list[str]], _Opt("--include", help="Glob of files to fetch (repeatable). "
                                                 "(default: top-level *.json, *.safetensors, tokenizer*, "
                                                 "chat_template.jinja).")] = None,
    exclude: Annotated[Optional[list[str]], _Opt("--exclude", help="Glob of files to skip (repeatable).")] = None,
    dest: DestOpt = None,
    lock: Annotated[Optional[Path], _Opt("--lock", help="A pinned lock: hashes (and default commits) to enforce; "
                                         "the endpoint must agree with it.")] = None,
    token: Annotated[Optional[str], _Opt("--token", help="Hub token (HF_TOKEN); sent only to the endpoint's "
                                         "origin, never printed.", show_default=False)] = None,
    jobs: Annotated[Optional[int], _Opt("--jobs", "-j", min=1, help="Parallel file downloads (default: 8).")] = None,
    dry_run: Annotated[bool, _Opt("--dry-run", help="List files, sizes and total; write nothing.")] = False,
    no_code: Annotated[bool, _Opt("--no-code", help="Skip the git checkout.")] = False,
    no_weights: Annotated[bool, _Opt("--no-weights", help="Skip the model weights.")] = False,
    from_dir: Annotated[Optional[Path], _Opt("--from-dir", help="Import an offline copy (a gptoss DEST or a folder "
                                             "of model files + --lock) by hard link or copy, hash-checked.")] = None,
    allow_pickle: Annotated[bool, _Opt("--allow-pickle", help="Allow .bin/.pt/.pth/.pkl weights (they can run "
                                       "code when loaded).")] = False,
    kernels: Annotated[Optional[bool], _Opt("--kernels/--no-kernels", help="Also fetch the native MXFP4 kernel "
                                            "repo the installed transformers loads, through the same endpoint. "
                                            "(default: on for openai/gpt-oss-*)")] = None,
) -> None:
    """Fetch the gpt-oss code and weights (resumable, sha256-checked) and write DEST/gptoss.lock.json."""
    from gptoss_cli.fetch import fetch as run_fetch

    out = output_for(ctx)
    if no_code and no_weights:
        raise UsageError("--no-code and --no-weights together leave nothing to fetch")
    settings = settings_for(ctx, {
        "fetch.repo_url": repo_url, "fetch.ref": ref, "fetch.git_mirror": git_mirror, "fetch.ssh_key": ssh_key,
        "fetch.model": model,
        "fetch.revision": revision, "fetch.endpoint": endpoint, "fetch.source": source, "fetch.include": include,
        "fetch.exclude": exclude, "fetch.dest": dest, "fetch.lock": lock, "fetch.token": token, "fetch.jobs": jobs,
        "fetch.allow_pickle": True if allow_pickle else None,
    })
    options = build_options(settings, no_code=no_code, no_weights=no_weights, dry_run=dry_run, from_dir=from_dir,
                            log=lambda m: out.info(f"gptoss: {m}"), kernels=kernels)
    with fetch_progress(out) as hooks:
        result = run_fetch(options, hooks)
    if not result.dry_run:
        remember(out, options.dest, "fetch", result)
    out.result(result, lambda console: render(result, console, out))
