"""``gptoss status`` (where a deployment stands), ``gptoss stop`` and ``gptoss logs`` (its detached server)."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from gptoss_cli.cli._errors import boundary
from gptoss_cli.cli._options import DestOpt, output_for, settings_for
from gptoss_cli.cli._progress import human_size
from gptoss_cli.errors import CouldNotRun, UsageError

_STAGES = ("fetch", "verify", "audit", "serve", "register")


@dataclass(frozen=True)
class Status:
    """Everything ``status`` knows, read only (nothing is written)."""

    dest: Path
    lock: Optional[dict[str, Any]]
    stages: dict[str, Any]
    server: Optional[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        return {"dest": str(self.dest), "lock": self.lock, "stages": self.stages, "server": self.server}


def read_status(dest: Path) -> Status:
    from gptoss_cli.lockfile import LOCK_NAME, LockError, read_lock
    from gptoss_cli.up.server import current
    from gptoss_cli.up.state import read_state

    try:
        lk = read_lock(dest / LOCK_NAME)
        lock: Optional[dict[str, Any]] = {
            "path": str(dest / LOCK_NAME), "created_at": lk.created_at, "files": len(lk.files),
            "total_bytes": lk.total_size, "model": lk.model.to_dict() if lk.model else None,
            "code": lk.code.to_dict() if lk.code else None}
    except LockError as exc:
        lock = None if not (dest / LOCK_NAME).exists() else {"error": exc.message}
    info = current(dest)
    server = None if info is None else info.to_dict()
    stages = {k: v.to_dict() for k, v in read_state(dest).stages.items()}
    return Status(dest, lock, stages, server)


@boundary
def status(ctx: typer.Context, dest: DestOpt = None) -> None:
    """Where the deployment in DEST stands: lock, last verify/audit, server, Dify registration."""
    out = output_for(ctx)
    settings = settings_for(ctx, {"fetch.dest": dest})
    result = read_status(Path(settings["fetch.dest"]))
    out.result(result, lambda console: _human(console, result))


def _human(console: Any, st: Status) -> None:
    say = lambda text: console.print(text, markup=False, highlight=False)  # noqa: E731
    say(f"gptoss status {st.dest}")
    lock = st.lock
    if lock is None:
        say("  fetched   no (no gptoss.lock.json: run `gptoss up` or `gptoss fetch`)")
    elif "error" in lock:
        say(f"  fetched   lock unreadable: {lock['error']}")
    else:
        model = lock["model"] or {}
        what = f"{model.get('repo_id', '-')}@{str(model.get('commit', ''))[:12]}"
        code = f", code @ {lock['code']['commit'][:12]}" if lock["code"] else ""
        say(f"  fetched   {what}: {lock['files']} files, {human_size(lock['total_bytes'])}{code} "
            f"(lock {lock['created_at']})")
    for name in ("verify", "audit"):
        rec = st.stages.get(name)
        say(f"  {name:<9} " + ("never run" if rec is None else
                               f"{'ok' if rec['ok'] else 'FAILED'} at {rec['at']}: {rec['summary']}"))
    srv = st.server
    if srv is None:
        say("  server    not running")
    elif not srv["running"]:
        say(f"  server    not running (pid {srv['pid']} has exited)")
    else:
        mode = "detached" if srv["detached"] else "foreground"
        say(f"  server    pid {srv['pid']} ({mode}), {'ready' if srv['ready'] else 'NOT ready'} at {srv['url']}: "
            f"{srv['model']} ({srv['engine']}, {srv['model_dir']})")
    rec = st.stages.get("register")
    if rec is None:
        say("  dify      never registered")
    elif not rec["ok"]:
        say(f"  dify      FAILED at {rec['at']}: {rec['summary']}")
    else:
        d = rec["data"]
        default = "default LLM" if d.get("default") else "not the default LLM"
        say(f"  dify      {d.get('model')} at {d.get('dify_url')} ({d.get('action')} {rec['at']}, {default}), "
            f"endpoint {d.get('endpoint_url')}")


@boundary
def stop(ctx: typer.Context, dest: DestOpt = None,
         timeout: Annotated[float, typer.Option("--timeout", min=1, help="Seconds to wait after SIGTERM.")] = 45.0
         ) -> None:
    """Stop the server of DEST (SIGTERM: in-flight requests drain), and wait until it has exited."""
    from gptoss_cli.up.server import stop as stop_server
    from gptoss_cli.up.state import StageRecord, record_quietly

    out = output_for(ctx)
    settings = settings_for(ctx, {"fetch.dest": dest})
    where = Path(settings["fetch.dest"])
    result = stop_server(where, timeout=timeout)
    if result.action == "stopped":
        record_quietly(where, StageRecord("serve", True, 0, f"stopped (pid {result.pid})",
                                          data={"pid": result.pid, "url": result.url, "stopped": True}))
    words = {"stopped": f"stopped the server (pid {result.pid}) in {result.seconds:.1f} s",
             "stale": f"no server running (removed the stale pid file of {result.pid})",
             "not-running": f"no server running for {where}"}
    out.result(result, lambda console: console.print(words[result.action], markup=False, highlight=False))


@boundary
def logs(ctx: typer.Context, dest: DestOpt = None,
         follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new lines until the server "
                                              "exits (or Ctrl-C).")] = False,
         lines: Annotated[int, typer.Option("--lines", "-n", min=0, help="Lines from the end to show first.")] = 50,
         ) -> None:
    """Print the detached server's log (DEST/.gptoss/serve.log)."""
    from gptoss_cli.up.server import alive, log_path, read_pid

    out = output_for(ctx)
    settings = settings_for(ctx, {"fetch.dest": dest})
    where = Path(settings["fetch.dest"])
    path = log_path(where)
    if not path.is_file():
        raise CouldNotRun(f"no server log at {path}", hint="`gptoss up --detach` writes it")
    if out.json_mode and follow:
        raise UsageError("--follow streams the raw log: drop --json")
    with open(path, "rb") as fh:
        data = fh.read()
        tail = data.splitlines(keepends=True)[-lines:] if lines else []
        if out.json_mode:
            out.result({"log": str(path), "lines": [x.decode("utf-8", "replace").rstrip("\r\n") for x in tail]})
            return
        _write(b"".join(tail))
        if not follow:
            return
        info = read_pid(where)
        while True:  # bounded by the server's life: stops when it has exited and the file is drained
            chunk = fh.read()
            if chunk:
                _write(chunk)
                continue
            if info is None or not alive(info.pid):
                return
            time.sleep(0.25)


def _write(data: bytes) -> None:
    sys.stdout.buffer.write(data)
    sys.stdout.flush()
