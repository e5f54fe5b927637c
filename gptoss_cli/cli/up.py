"""``gptoss up``: fetch → verify → audit → serve → dify-register from one config, idempotent and resumable."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from gptoss_cli.cli._complete import offer
from gptoss_cli.cli._errors import boundary
from gptoss_cli.cli._options import DestOpt, output_for, settings_for, state
from gptoss_cli.cli._output import Output
from gptoss_cli.config import Settings
from gptoss_cli.errors import GptossError, UsageError

if TYPE_CHECKING:
    from gptoss_cli.up import StageResult, UpPlan, UpResult

_Opt = typer.Option
SOURCES = ("hf", "modelscope")  # as `gptoss fetch --source`
_Str = Optional[str]
_MARK = {"done": "✓", "skipped": "✓", "failed": "✗", "off": "-", "planned": "·", "not-run": "-"}


class StageFailed(GptossError):
    """A stage of ``gptoss up`` failed: its own exit code, and what to do next."""

    def __init__(self, stage: "StageResult") -> None:
        super().__init__(f"{stage.name}: {stage.summary}", hint=stage.next)
        self.exit_code = stage.exit_code


@boundary
def up(
    ctx: typer.Context,
    dest: DestOpt = None,
    dry_run: Annotated[bool, _Opt("--dry-run", help="Print the plan of every stage; change nothing.")] = False,
    detach: Annotated[Optional[bool], _Opt("--detach/--foreground", "-d",
                                           help="Run the server in the background (pid and log file in "
                                           "DEST/.gptoss; `gptoss stop` / `gptoss logs`). (default: foreground)",
                                           show_default=False)] = None,
    no_verify: Annotated[bool, _Opt("--no-verify", help="Trust DEST's lock without re-hashing the files.")] = False,
    no_audit: Annotated[bool, _Opt("--no-audit", help="Skip the audit stage.")] = False,
    no_serve: Annotated[bool, _Opt("--no-serve", help="Stop after fetch, verify and audit.")] = False,
    no_register: Annotated[bool, _Opt("--no-register", help="Do not register in Dify.")] = False,
    model: Annotated[_Str, _Opt("--model", help="Model repo id. (default: openai/gpt-oss-20b)")] = None,
    revision: Annotated[_Str, _Opt("--revision", help="Model branch, tag or commit. (default: main)")] = None,
    endpoint: Annotated[_Str, _Opt("--endpoint", help="HF-compatible endpoint or mirror (HF_ENDPOINT).")] = None,
    source: Annotated[_Str, _Opt("--source", autocompletion=offer(SOURCES), help="Weights from hf or modelscope.")
                      ] = None,
    repo_url: Annotated[_Str, _Opt("--repo-url", help="Git URL of the gpt-oss code.")] = None,
    ref: Annotated[_Str, _Opt("--ref", help="Branch, tag or commit of the code.")] = None,
    lock: Annotated[Optional[Path], _Opt("--lock", help="A pinned lock to fetch and verify against.")] = None,
    from_dir: Annotated[Optional[Path], _Opt("--from-dir", help="Import an offline copy instead of downloading.")
                        ] = None,
    bundle: Annotated[Optional[Path], _Opt("--bundle", help="Import DEST from a `gptoss bundle` (folder or tar; "
                                           "every hash checked first) instead of downloading.")] = None,
    osv_url: Annotated[_Str, _Opt("--osv-url", help="OSV-compatible query URL for the audit.")] = None,
    osv_db: Annotated[Optional[Path], _Opt("--osv-db", help="Air-gapped audit: a local OSV export.")] = None,
    host: Annotated[_Str, _Opt("--host", help="Address the server listens on. (default: 127.0.0.1)")] = None,
    port: Annotated[Optional[int], _Opt("--port", help="Port the server listens on. (default: 8000)")] = None,
    served_model_name: Annotated[_Str, _Opt("--served-model-name", help="Model id served and registered in Dify. "
                                            "(default: gpt-oss-20b)")] = None,
    ready_timeout: Annotated[Optional[float], _Opt("--ready-timeout", min=1,
                                                   help="Seconds to wait for the model to load. (default: 900)")
                             ] = None,
    dify_url: Annotated[_Str, _Opt("--dify-url", help="Dify base URL (registration is off without one).")] = None,
    endpoint_url: Annotated[_Str, _Opt("--endpoint-url", help="The server as Dify reaches it (…/v1). (default: "
                                       "the URL the server reports)")] = None,
    email: Annotated[_Str, _Opt("--email", help="Dify admin/owner account email.")] = None,
    password_env: Annotated[_Str, _Opt("--password-env", help="Variable holding the Dify password.")] = None,
    admin_api_key_env: Annotated[_Str, _Opt("--admin-api-key-env", help="Variable holding Dify's ADMIN_API_KEY.")
                                 ] = None,
    workspace_id: Annotated[_Str, _Opt("--workspace-id", help="Dify workspace id (admin-key mode).")] = None,
    set_default: Annotated[Optional[bool], _Opt("--set-default", help="Make it the workspace's default LLM.")
                           ] = None,
) -> None:
    """Fetch, verify, audit, serve and register in Dify in one command; a second run skips what is done.

    Settings come from gptoss.toml (the keys the single commands read) and these flags. Stops at the first failing
    stage with its exit code and what to do next. --json: one document with every stage's result; in the
    foreground (the default, where up keeps serving) JSON Lines: one "stage" event per stage, then "exit".
    """
    from gptoss_cli.up.stages import UpHooks, run_up

    out = output_for(ctx)
    settings = settings_for(ctx, {
        "fetch.dest": dest, "fetch.model": model, "fetch.revision": revision, "fetch.endpoint": endpoint,
        "fetch.source": source, "fetch.repo_url": repo_url, "fetch.ref": ref, "fetch.lock": lock,
        "audit.osv_url": osv_url, "audit.osv_db": osv_db, "serve.host": host, "serve.port": port,
        "serve.served_model_name": served_model_name, "up.ready_timeout": ready_timeout, "up.detach": detach,
        "up.audit": False if no_audit else None, "up.register": False if no_register else None,
        "dify.url": dify_url, "dify.endpoint_url": endpoint_url, "dify.email": email,
        "dify.password_env": password_env, "dify.admin_api_key_env": admin_api_key_env,
        "dify.workspace_id": workspace_id, "dify.set_default": set_default,
    })
    if bundle is not None and from_dir is not None:
        raise UsageError("give either --bundle or --from-dir, not both")
    plan = build_plan(ctx, settings, from_dir=from_dir, no_verify=no_verify, no_serve=no_serve,
                      dry_run=dry_run, log=lambda m: out.info(f"gptoss: {m}"), bundle=bundle)
    if dry_run:
        from gptoss_cli.up import UpResult

        result = UpResult(plan.dest, plan.describe(), dry_run=True)
        out.result(result, lambda console: _render(console, result.stages, out))
        return
    foreground = plan.serve is not None and not plan.serve.detach
    if foreground and out.json_mode:
        out.streamed = True  # JSON Lines: one "stage" event per stage, then the "exit" envelope
    result, proc = _run(plan, out, run_up, UpHooks)
    try:
        if out.json_mode and not out.streamed:
            out.result(result)
        failed = result.failed
        if failed is not None:
            raise StageFailed(failed)
        if foreground and proc is not None:
            _foreground(plan, result, proc, out)
    except BaseException:
        if foreground and proc is not None and proc.poll() is None:  # never leave an unsupervised server
            from gptoss_cli.up.server import terminate

            terminate(plan.dest, proc)
        raise


def _run(plan: "UpPlan", out: Output, run_up: Any, hooks_type: Any) -> tuple["UpResult", Any]:
    live = _Live(out)

    def done(stage: "StageResult") -> None:
        live.stop()
        if out.json_mode and out.streamed:
            out.event("stage", **{("stage" if k == "name" else k): v for k, v in stage.to_dict().items()})
        elif not out.json_mode:
            _render(out.out, (stage,), out)

    hooks = hooks_type(stage=live.start, done=done, fetch=live.fetch_hooks, verify_progress=live.bytes,
                       step=live.step, log=lambda m: out.info(f"gptoss: {m}"))
    try:
        return run_up(plan, hooks)
    finally:
        live.stop()


class _Live:
    """One progress display per stage (rich allows one live display at a time): bars for fetch and verify,
    a status line for audit and register."""

    def __init__(self, out: Output) -> None:
        self.out = out
        self.stack: Any = None
        self.tasks: Any = None
        self.status: Any = None

    def start(self, name: str) -> None:
        import contextlib

        from gptoss_cli.cli._progress import Tasks, steps

        self.stop()
        self.out.detail(f"gptoss: up: {name} ...")
        self.stack = contextlib.ExitStack()
        if name in ("fetch", "verify"):
            self.tasks = self.stack.enter_context(Tasks(self.out))
        elif name in ("audit", "register"):
            self.status = self.stack.enter_context(steps(self.out))

    def stop(self) -> None:
        stack, self.stack, self.tasks, self.status = self.stack, None, None, None
        if stack is not None:
            stack.close()

    def bytes(self, done: int, total: int) -> None:
        if self.tasks is not None:
            self.tasks.update("verifying", done, total)

    def step(self, message: str) -> None:
        (self.status or self.out.info)(message)

    def fetch_hooks(self) -> Any:
        from gptoss_cli.fetch import Hooks

        tasks, out = self.tasks, self.out

        def on_file(path: str, done: int, total: int) -> None:
            if tasks is not None:
                tasks.note("weights", f"{done}/{total} files")
            out.detail(f"gptoss: {path}: complete, sha256 checked ({done}/{total})")

        def on_git(stage: str, current: int, maximum: Optional[int]) -> None:
            if tasks is not None:
                tasks.update(f"git {stage}", current, maximum, unit="objects")

        return Hooks(log=lambda m: out.info(f"gptoss: {m}"),
                     progress=lambda d, t: tasks.update("weights", d, t) if tasks is not None else None,
                     git=on_git, file_done=on_file)


def _foreground(plan: "UpPlan", result: "UpResult", proc: Any, out: Output) -> None:
    from gptoss_cli.up.server import supervise

    if result.server is not None:
        out.info(f"gptoss: up: serving {result.server.url} in the foreground (pid {proc.pid}); Ctrl-C stops it")
    code = supervise(plan.dest, proc)
    if code:
        raise typer.Exit(code)


def _render(console: Any, stages: Any, out: Output) -> None:
    for s in stages:
        line = f"{_MARK.get(s.status, '?')} {s.name:<9} {s.status:<8} {s.summary}"
        if s.seconds >= 0.05:
            line += f" ({s.seconds:.1f} s)"
        console.print(line, markup=False, highlight=False)


def build_plan(ctx: typer.Context, s: Settings, *, from_dir: Optional[Path], no_verify: bool, no_serve: bool,
               dry_run: bool, log: Any, bundle: Optional[Path] = None) -> "UpPlan":
    """Settings → the explicit plan; every option is checked here, before anything slow (exit 2)."""
    from gptoss_cli.cli.fetch import build_options
    from gptoss_cli.up import UpPlan

    dest = Path(s["fetch.dest"])
    fetch = build_options(s, no_code=False, no_weights=False, dry_run=False, from_dir=from_dir, log=log)
    serve = None if no_serve else _serve_launch(ctx, s, dest)
    register = _register_plan(s, serve, dry_run) if serve is not None or s.get("dify.endpoint_url") else None
    off = ("--no-register" if not s["up.register"] else "no Dify: set [dify] url in gptoss.toml or --dify-url"
           if not s.get("dify.url") else "nothing served (--no-serve) and no dify.endpoint_url")
    return UpPlan(register_off=off, dest=dest, fetch=fetch, verify=not no_verify, verify_jobs=int(s["verify.jobs"]),
                  audit=_audit_request(s, dest) if s["up.audit"] else None,
                  audit_max_age_s=float(s["up.audit_max_age"]) * 3600, serve=serve, register=register,
                  bundle=_bundle_path(bundle))


def _bundle_path(bundle: Optional[Path]) -> Optional[Path]:
    if bundle is None:
        return None
    bundle = bundle.expanduser()
    if not bundle.exists():
        raise UsageError(f"bundle {bundle} does not exist", hint="make one with `gptoss bundle create OUT`")
    return bundle


def _audit_request(s: Settings, dest: Path) -> Any:
    from gptoss_cli.audit import SERVICE_CHOICES, AuditRequest

    if s["audit.service"] not in SERVICE_CHOICES:
        raise UsageError(f"audit.service {s['audit.service']!r}: choose one of {', '.join(SERVICE_CHOICES)}")
    return AuditRequest(code_dir=dest / "code", service=s["audit.service"], osv_url=s.get("audit.osv_url"),
                        osv_db=s.get("audit.osv_db"), ignore_vulns=tuple(s["audit.ignore_vulns"]),
                        fail_on=s["audit.fail_on"], resolve=bool(s["audit.resolve"]),
                        timeout=int(s["audit.timeout"]), cache_dir=s.home / "pip-audit-cache")


def _serve_launch(ctx: typer.Context, s: Settings, dest: Path) -> Any:
    from gptoss_cli.up import ServeLaunch
    from gptoss_cli.up.server import serve_argv

    flags = {k: s[k] if s.source(k) == "flag" else None for k in ("serve.host", "serve.port")}
    extra = ["--served-model-name", s["serve.served_model_name"]] if s.source("serve.served_model_name") == "flag" \
        else []
    argv = serve_argv(dest / "model", host=flags["serve.host"], port=flags["serve.port"],
                      config_file=state(ctx).config_file, extra=extra)
    return ServeLaunch(argv=tuple(argv), model_dir=dest / "model", detach=bool(s["up.detach"]),
                       ready_timeout=float(s["up.ready_timeout"]), model_name=s["serve.served_model_name"],
                       env=dict(os.environ))


def _register_plan(s: Settings, serve: Any, dry_run: bool) -> Any:
    from gptoss_cli.cli.dify import _named_secret, _password
    from gptoss_cli.dify import RegisterOptions
    from gptoss_cli.up import RegisterPlan

    if not s["up.register"] or not s.get("dify.url"):
        return None
    admin_key = _named_secret(s.get("dify.admin_api_key_env"), "--admin-api-key-env")
    if admin_key is None and not s.get("dify.email"):
        raise UsageError("registering in Dify needs --email (or --admin-api-key-env VAR with --workspace-id)",
                         hint="or --no-register")
    password = None if admin_key or dry_run else _password(s, False)
    if admin_key is None and password is None and not dry_run:
        raise UsageError("registering in Dify needs the password: --password-env VAR (or a terminal to type it)",
                         hint="or --no-register")
    name = s["dify.model_name"] if s.source("dify.model_name") != "default" else s["serve.served_model_name"]
    server_key = _named_secret(s.get("dify.server_api_key_env"), "--server-api-key-env") or s.get("serve.api_key")
    opts = RegisterOptions(
        endpoint_url=s.get("dify.endpoint_url"), model_name=name, email=s.get("dify.email"), password=password,
        admin_api_key=admin_key, workspace_id=s.get("dify.workspace_id"), server_api_key=server_key,
        context_size=s.get("dify.context_size"), max_tokens=s.get("dify.max_tokens"),
        show_reasoning=s["dify.show_reasoning"], structured_output=s.get("dify.structured_output"),
        set_default=s["dify.set_default"], install_plugin=s["dify.install_plugin"], preflight=s["dify.preflight"],
        dify_version=s.get("dify.version"))
    return RegisterPlan(dify_url=s["dify.url"], options=opts, timeout=float(s["dify.timeout"]),
                        insecure=bool(s["dify.insecure"]))
