"""The ``gptoss serve`` child of ``gptoss up``: spawn it, wait (bounded) until it is ready, find it again, stop it.

The child is a real ``python -m gptoss_cli serve MODEL_DIR --json --skip-verify ...`` (``up`` verified the model a
moment before). It runs in its own session, so a Ctrl-C in the terminal reaches it once, forwarded by ``up``. Its
stdout (JSON Lines: the ``ready`` event with URL, model and engine, then the ``exit`` envelope) goes to
``DEST/.gptoss/serve.events.jsonl``; its stderr (the ready line, access log, errors) to the terminal in the foreground
or to ``DEST/.gptoss/serve.log`` with ``--detach``. ``DEST/.gptoss/serve.pid.json`` says which process serves this
DEST (pid, URL, model, engine, log): written atomically once it is ready, removed when it stops.

No secret goes on the child's command line: the API key travels in its environment (``GPTOSS_API_KEY``) or in the
config file it reads itself.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from gptoss_cli.errors import CouldNotRun
from gptoss_cli.lockfile import atomic_write_text, utc_now
from gptoss_cli.up.state import state_dir

PID_NAME = "serve.pid.json"
LOG_NAME = "serve.log"
EVENTS_NAME = "serve.events.jsonl"


@dataclass(frozen=True)
class ServerInfo:
    """A running (or last known) server of this DEST."""

    pid: int
    url: str  # the OpenAI base URL, …/v1
    model: str
    engine: str
    model_dir: str
    detached: bool
    log: Optional[str]
    started_at: str
    running: bool = True
    ready: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"pid": self.pid, "url": self.url, "model": self.model, "engine": self.engine,
                "model_dir": self.model_dir, "detached": self.detached, "log": self.log,
                "started_at": self.started_at, "running": self.running, "ready": self.ready}


def pid_path(dest: Path) -> Path:
    return state_dir(dest) / PID_NAME


def log_path(dest: Path) -> Path:
    return state_dir(dest) / LOG_NAME


def events_path(dest: Path) -> Path:
    return state_dir(dest) / EVENTS_NAME


def serve_argv(model_dir: Path, *, host: Optional[str], port: Optional[int], config_file: Optional[Path],
               extra: Sequence[str] = ()) -> list[str]:
    argv = [sys.executable, "-m", "gptoss_cli"]
    if config_file is not None:
        argv += ["--config", str(config_file)]
    argv += ["serve", str(model_dir), "--json", "--skip-verify"]
    if host is not None:
        argv += ["--host", host]
    if port is not None:
        argv += ["--port", str(port)]
    return argv + list(extra)


def spawn(dest: Path, argv: Sequence[str], *, detach: bool, env: Optional[Mapping[str, str]] = None
          ) -> subprocess.Popen:
    """Start the child in its own session; stdout to the events file, stderr to the log (detached) or ours."""
    folder = state_dir(dest)
    folder.mkdir(parents=True, exist_ok=True)
    events = open(events_path(dest), "wb")  # noqa: SIM115 - handed to the child, closed below
    log = open(log_path(dest), "ab") if detach else None  # noqa: SIM115
    try:
        return subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=events,
                                stderr=log if log is not None else None, start_new_session=True,
                                env=dict(env) if env is not None else None, close_fds=True)
    except OSError as exc:
        raise CouldNotRun(f"cannot start `gptoss serve`: {exc.strerror or exc}") from None
    finally:
        events.close()
        if log is not None:
            log.close()


def _ready_event(dest: Path) -> Optional[dict[str, Any]]:
    try:
        lines = events_path(dest).read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return None
    for line in lines:
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if isinstance(obj, dict) and obj.get("event") == "ready":
            return obj
    return None


def probe_ready(url: str, timeout: float = 2.0) -> bool:
    """GET ``<server>/ready`` (``url`` is the …/v1 base) answers 200; no proxy, no network beyond the URL."""
    import urllib.error
    import urllib.request

    root = url[: -len("/v1")] if url.endswith("/v1") else url
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(root + "/ready", timeout=timeout) as reply:
            return int(reply.status) == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def log_size(dest: Path) -> int:
    try:
        return log_path(dest).stat().st_size
    except OSError:
        return 0


def wait_ready(dest: Path, proc: subprocess.Popen, timeout: float, poll: float = 0.25, log_from: int = 0
               ) -> dict[str, Any]:
    """The child's ``ready`` event once ``/ready`` answers 200; CouldNotRun if it exits or ``timeout`` passes.
    ``log_from``: where this child's lines start in the (appended) log file."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        code = proc.poll()
        if code is not None:
            raise ChildExited(code, _last_error(log_path(dest), log_from))
        event = _ready_event(dest)
        if event is not None and probe_ready(str(event.get("url", ""))):
            return event
        time.sleep(poll)
    raise CouldNotRun(f"`gptoss serve` was not ready after {timeout:.0f} s (pid {proc.pid}, still running)",
                      hint=f"see {log_path(dest)} or the output above; raise up.ready_timeout for a slow load")


class ChildExited(CouldNotRun):
    """The server exited before it was ready; ``exit_code`` is the child's."""

    def __init__(self, code: int, why: Optional[str] = None) -> None:
        said = f": {why}" if why else ""
        super().__init__(f"`gptoss serve` exited with status {code} before it was ready{said}",
                         hint="its whole output is above (or in `gptoss logs`)")
        self.exit_code = code if code > 0 else 3


def _last_error(log: Path, start: int) -> Optional[str]:
    """The last ``gptoss: error:`` line this child wrote to its log (None in the foreground: it is on screen)."""
    try:
        with open(log, "rb") as fh:
            fh.seek(start)
            lines = fh.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return None
    errors = [x for x in lines if x.startswith("gptoss: error: ")]
    return errors[-1][len("gptoss: error: "):] if errors else None


def write_pid(dest: Path, info: ServerInfo) -> None:
    atomic_write_text(pid_path(dest), json.dumps(info.to_dict(), indent=2, sort_keys=True) + "\n")


def remove_pid(dest: Path, pid: int) -> None:
    """Remove the pid file if it still names ``pid`` (a newer server's file is left alone)."""
    info = read_pid(dest)
    if info is not None and info.pid == pid:
        try:
            pid_path(dest).unlink()
        except FileNotFoundError:
            pass


def read_pid(dest: Path) -> Optional[ServerInfo]:
    try:
        obj = json.loads(pid_path(dest).read_text(encoding="utf-8"))
        return ServerInfo(pid=int(obj["pid"]), url=str(obj["url"]), model=str(obj["model"]),
                          engine=str(obj["engine"]), model_dir=str(obj["model_dir"]), detached=bool(obj["detached"]),
                          log=obj.get("log"), started_at=str(obj["started_at"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def alive(pid: int) -> bool:
    """Whether ``pid`` is a live process that is a gptoss server (not a recycled pid)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True  # no /proc (macOS): trust the pid
    if b"gptoss" not in cmdline or b"serve" not in cmdline:
        return False
    try:  # a zombie (our own child not yet reaped) has stopped serving
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def current(dest: Path, probe: bool = True) -> Optional[ServerInfo]:
    """The server of this DEST as the pid file says, with ``running`` and ``ready`` checked now."""
    info = read_pid(dest)
    if info is None:
        return None
    running = alive(info.pid)
    ready = running and probe and probe_ready(info.url)
    return ServerInfo(**{**info.to_dict(), "running": running, "ready": ready})


def info_from_event(event: Mapping[str, Any], proc: subprocess.Popen, model_dir: Path, *, detached: bool,
                    log: Optional[Path]) -> ServerInfo:
    return ServerInfo(pid=proc.pid, url=str(event.get("url", "")), model=str(event.get("model", "")),
                      engine=str(event.get("engine", "")), model_dir=str(model_dir), detached=detached,
                      log=str(log) if log is not None else None, started_at=utc_now(), running=True, ready=True)


@dataclass(frozen=True)
class StopResult:
    pid: Optional[int]
    action: str  # "stopped" | "not-running" | "stale" (a pid file whose process is gone)
    seconds: float
    url: Optional[str] = None


def stop(dest: Path, timeout: float = 45.0, poll: float = 0.2) -> StopResult:
    """SIGTERM the DEST's server and wait for it (bounded); CouldNotRun if it is still running after ``timeout``."""
    started = time.monotonic()
    info = read_pid(dest)
    if info is None:
        return StopResult(None, "not-running", 0.0)
    if not alive(info.pid):
        remove_pid(dest, info.pid)
        return StopResult(info.pid, "stale", 0.0, info.url)
    try:
        os.kill(info.pid, signal.SIGTERM)
    except ProcessLookupError:
        remove_pid(dest, info.pid)
        return StopResult(info.pid, "stale", 0.0, info.url)
    deadline = started + timeout
    while time.monotonic() < deadline:
        if not alive(info.pid):
            remove_pid(dest, info.pid)
            return StopResult(info.pid, "stopped", time.monotonic() - started, info.url)
        time.sleep(poll)
    raise CouldNotRun(f"the server (pid {info.pid}) is still running {timeout:.0f} s after SIGTERM",
                      hint=f"it may be draining long requests; wait, or `kill -9 {info.pid}`")


def terminate(dest: Path, proc: subprocess.Popen, timeout: float = 45.0) -> None:
    """Stop a child this process started (SIGTERM, then SIGKILL after ``timeout``) and remove its pid file."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    remove_pid(dest, proc.pid)


def supervise(dest: Path, proc: subprocess.Popen) -> int:
    """Wait for the foreground child, forwarding SIGINT/SIGTERM to it (it drains, a second signal cuts it short);
    returns its exit status (128+N for a signal), and removes its pid file."""
    def forward(sig: int, _frame: Any) -> None:
        try:
            proc.send_signal(sig)
        except ProcessLookupError:
            pass

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        code = proc.wait()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        remove_pid(dest, proc.pid)
    return 128 - code if code < 0 else code


__all__ = ["ChildExited", "ServerInfo", "StopResult", "alive", "current", "events_path", "info_from_event",
           "log_path", "log_size", "pid_path", "probe_ready", "read_pid", "remove_pid", "serve_argv", "spawn", "stop",
           "supervise", "terminate", "wait_ready", "write_pid"]
