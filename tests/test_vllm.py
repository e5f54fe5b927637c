"""``--engine vllm`` without GPUs: the exact ``vllm serve`` argv and env, and supervision of stand-in children."""

from __future__ import annotations

import asyncio
import os
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from gptoss_cli.errors import CouldNotRun, UsageError
from gptoss_cli.serve.engines.vllm.supervisor import ChildFailed, ChildSupervisor
from gptoss_cli.serve.engines.vllm.backend import OFFLINE_ENV, VllmBackend, VllmOptions, preflight, private_socket_path, vllm_argv, vllm_env
from tests.ports import free_port
from tests.upstream_fixtures import write_fake_vllm


CHILD = textwrap.dedent('''
    import http.server, os, signal, subprocess, sys, threading, time
    mode, port, state = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    with open(state + ".starts", "a") as f:
        f.write("x")
    starts = len(open(state + ".starts").read())
    with open(state + ".env", "w") as f:
        f.write(os.environ.get("VLLM_API_KEY", "") + "\\n" + os.environ.get("HF_HUB_OFFLINE", ""))
    print(f"stand-in start {starts} mode {mode}", flush=True)
    born = time.monotonic()

    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            ok = self.path == "/health" and not (mode == "unresponsive" and time.monotonic() - born > 0.5)
            self.send_response(200 if ok else 500)
            self.send_header("Content-Length", "0")
            self.end_headers()
        def log_message(self, *a):
            pass

    def serve():
        http.server.ThreadingHTTPServer(("127.0.0.1", port), H).serve_forever()

    if mode == "exit":
        print("fatal: CUDA out of memory", flush=True)
        sys.exit(3)
    if mode in ("hang", "stubborn"):
        if mode == "stubborn":
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        time.sleep(600)
    if mode == "stubborn-serve":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if mode == "grandchild":
        g = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        with open(state + ".grandchild", "w") as f:
            f.write(str(g.pid))
    if mode == "die-after" or (mode == "flaky" and starts == 1):
        threading.Thread(target=serve, daemon=True).start()
        time.sleep(0.8)
        print("worker crashed", flush=True)
        os._exit(1)
    serve()
''')


def run(coro: Any, timeout: float = 60) -> Any:
    return asyncio.run(asyncio.wait_for(coro, timeout))


@pytest.fixture
def child(tmp_path: Path) -> Any:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    state = tmp_path / "state"

    def make(mode: str, **kw: Any) -> ChildSupervisor:
        port = free_port()
        kw.setdefault("start_timeout", 20)
        kw.setdefault("poll_interval", 0.05)
        kw.setdefault("restart_backoff", 0.05)
        kw.setdefault("stop_grace", 2)
        kw.setdefault("on_output", lines.append)
        sup = ChildSupervisor([sys.executable, str(script), mode, str(port), str(state)], dict(os.environ),
                              f"http://127.0.0.1:{port}/health", name="stand-in", **kw)
        return sup

    lines: list[str] = []
    make.lines = lines  # type: ignore[attr-defined]
    make.starts = lambda: len((tmp_path / "state.starts").read_text()) if (tmp_path / "state.starts").exists() else 0  # type: ignore[attr-defined]
    make.state = state  # type: ignore[attr-defined]
    return make


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie still answers kill(0); look at its state
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


# ---------------------------------------------------------------------------------------------------- argv / env


def test_vllm_argv_exact() -> None:
    o = VllmOptions(model_dir=Path("/models/gpt-oss-20b"), served_model_names=("gpt-oss-20b", "gpt-oss"),
                    socket_path=Path("/tmp/gptoss-vllm-x/vllm.sock"),
                    max_model_len=32768, tensor_parallel_size=4, pipeline_parallel_size=2,
                    distributed_executor_backend="ray", system_start_date="2026-01-02",
                    gpu_memory_utilization=0.9, extra_args=("--max-num-seqs", "64"))
    assert vllm_argv(o) == [
        "vllm", "serve", "/models/gpt-oss-20b",
        "--served-model-name", "gpt-oss-20b", "gpt-oss",
        "--uds", "/tmp/gptoss-vllm-x/vllm.sock",
        "--dtype", "auto",
        "--load-format", "safetensors",
        "--tensor-parallel-size", "4", "--pipeline-parallel-size", "2",
        "--distributed-executor-backend", "ray",
        "--max-model-len", "32768",
        "--gpu-memory-utilization", "0.9",
        "--reasoning-parser", "openai_gptoss",
        "--tool-call-parser", "openai", "--enable-auto-tool-choice",
        "--disable-uvicorn-access-log",
        "--max-num-seqs", "64",
    ]
    assert o.world_size == 8


def test_vllm_argv_minimal_and_never_remote_code() -> None:
    argv = vllm_argv(VllmOptions(model_dir=Path("m"), socket_path=Path("s.sock")))
    assert argv == ["vllm", "serve", "m", "--served-model-name", "gpt-oss-20b", "--uds", "s.sock", "--dtype", "auto", "--load-format", "safetensors",
                    "--tensor-parallel-size", "1", "--pipeline-parallel-size", "1",
                    "--reasoning-parser", "openai_gptoss", "--tool-call-parser", "openai",
                    "--enable-auto-tool-choice", "--disable-uvicorn-access-log"]
    assert "--trust-remote-code" not in argv and "--api-key" not in argv
    assert "--host" not in argv and "--port" not in argv  # no TCP listener at all


@pytest.mark.parametrize("kw", [
    {"tensor_parallel_size": 0}, {"pipeline_parallel_size": -1}, {"distributed_executor_backend": "mpi"},
    {"dtype": "int4"}, {"system_start_date": "2026/01/02"}, {"max_model_len": 1}, {"socket_path": Path("/" + "x" * 120)},
    {"served_model_names": ()}, {"gpu_memory_utilization": 1.5},
])
def test_vllm_options_validated(kw: dict[str, Any]) -> None:
    with pytest.raises(UsageError):
        VllmOptions(model_dir=Path("m"), **kw)


def test_vllm_env_offline_pinned_and_without_our_secrets() -> None:
    base = {"PATH": "/bin", "GPTOSS_API_KEY": "front-secret", "HF_TOKEN": "hf-secret", "MY_UP_KEY": "up",
            "VLLM_API_KEY": "inherited", "CUDA_VISIBLE_DEVICES": "0,1"}
    o = VllmOptions(model_dir=Path("m"), system_start_date="2026-01-02")
    env = vllm_env(o, api_key="internal", base=base, drop=["MY_UP_KEY"])
    for k, v in OFFLINE_ENV.items():
        assert env[k] == v
    assert env["HF_HUB_OFFLINE"] == "1" and env["TRANSFORMERS_OFFLINE"] == "1"
    assert env["VLLM_SYSTEM_START_DATE"] == "2026-01-02" and env["VLLM_API_KEY"] == "internal"
    assert env["CUDA_VISIBLE_DEVICES"] == "0,1" and env["PATH"] == "/bin"
    assert not {"GPTOSS_API_KEY", "HF_TOKEN", "MY_UP_KEY"} & set(env)
    assert "VLLM_API_KEY" not in vllm_env(VllmOptions(model_dir=Path("m")), base=base)
    assert "VLLM_SYSTEM_START_DATE" not in vllm_env(VllmOptions(model_dir=Path("m")), base={})


def test_preflight(tmp_path: Path) -> None:
    o = VllmOptions(model_dir=tmp_path, executable="vllm-definitely-missing")
    with pytest.raises(CouldNotRun, match="not found"):
        preflight(o, {"PATH": str(tmp_path)})
    exe = tmp_path / "vllm"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    o = VllmOptions(model_dir=tmp_path, executable="vllm", pipeline_parallel_size=2)
    with pytest.raises(UsageError, match="config.json"):
        preflight(o, {"PATH": str(tmp_path)})
    (tmp_path / "config.json").write_text("{}")
    warnings = preflight(o, {"PATH": str(tmp_path), "TIKTOKEN_ENCODINGS_BASE": str(tmp_path / "none")})
    assert any("holds no o200k_base.tiktoken" in w for w in warnings) and any("ray" in w for w in warnings)
    assert preflight(VllmOptions(model_dir=tmp_path), {"PATH": str(tmp_path)}) == []  # the shipped copy is used
    (tmp_path / "o200k_base.tiktoken").write_text("x")
    with pytest.raises(CouldNotRun, match="SHA-256"):  # a copy the user points at is checked too
        preflight(VllmOptions(model_dir=tmp_path), {"PATH": str(tmp_path), "TIKTOKEN_ENCODINGS_BASE": str(tmp_path)})


def test_the_vllm_child_reads_the_shipped_vocabulary_offline(tmp_path: Path) -> None:
    from gptoss_cli.vocab import O200K_SHA256, SHIPPED, sha256_of

    env = vllm_env(VllmOptions(model_dir=tmp_path), base={"PATH": "/usr/bin"})
    assert env["TIKTOKEN_ENCODINGS_BASE"] == str(SHIPPED)
    assert sha256_of(Path(env["TIKTOKEN_ENCODINGS_BASE"]) / "o200k_base.tiktoken") == O200K_SHA256
    own = tmp_path / "vocab"
    own.mkdir()
    (own / "o200k_base.tiktoken").write_bytes((SHIPPED / "o200k_base.tiktoken").read_bytes())
    assert vllm_env(VllmOptions(model_dir=tmp_path), base={"TIKTOKEN_ENCODINGS_BASE": str(own)})[
        "TIKTOKEN_ENCODINGS_BASE"] == str(own)
    path = private_socket_path()
    try:
        assert path.name == "vllm.sock" and path.parent.stat().st_mode & 0o777 == 0o700 and not path.exists()
    finally:
        path.parent.rmdir()


# ---------------------------------------------------------------------------------------------------- supervision


def test_child_healthy_then_stopped(child: Any) -> None:
    async def scenario() -> None:
        sup = child("serve")
        await sup.start()
        assert sup.healthy and await sup.probe()
        pid = sup.pid
        await sup.stop()
        assert sup.state == "stopped" and not alive(pid)

    run(scenario())
    assert any("stand-in start 1" in line for line in child.lines)


def test_child_exit_during_start_is_clear_error(child: Any) -> None:
    async def scenario() -> None:
        sup = child("exit")
        with pytest.raises(ChildFailed, match=r"exited with code 3 .*CUDA out of memory"):
            await sup.start()
        await sup.stop()

    run(scenario())


def test_child_that_hangs_is_killed_after_start_timeout(child: Any) -> None:
    async def scenario() -> None:
        sup = child("stubborn", start_timeout=1.0, stop_grace=0.5)
        started = time.monotonic()
        with pytest.raises(ChildFailed, match="did not become healthy within 1 s"):
            await sup.start()
        assert time.monotonic() - started < 10
        assert not alive(sup.pid)  # SIGTERM ignored -> SIGKILL

    run(scenario())


def test_stop_escalates_to_sigkill_and_reaps_the_group(child: Any) -> None:
    async def scenario() -> None:
        sup = child("grandchild")
        await sup.start()
        grandchild = int((child.state.parent / "state.grandchild").read_text())
        assert alive(grandchild)
        await sup.stop()
        for _ in range(100):
            if not alive(grandchild):
                break
            await asyncio.sleep(0.05)
        assert not alive(grandchild)
        sup = child("stubborn-serve", stop_grace=0.3)
        await sup.start()
        t = time.monotonic()
        await sup.stop()
        assert not alive(sup.pid) and time.monotonic() - t < 5

    run(scenario())


def test_child_restarted_after_crash_then_recovers(child: Any) -> None:
    async def scenario() -> None:
        failures: list[str] = []
        sup = child("flaky", max_restarts=2, on_failure=failures.append)
        await sup.start()
        first = sup.pid
        for _ in range(200):
            if sup.restarts == 1 and sup.healthy:
                break
            await asyncio.sleep(0.05)
        assert sup.restarts == 1 and sup.healthy and sup.pid != first and not failures
        await sup.stop()

    run(scenario())
    assert child.starts() == 2 and any("worker crashed" in line for line in child.lines)


def test_child_gives_up_after_bounded_restarts(child: Any) -> None:
    async def scenario() -> list[str]:
        failures: list[str] = []
        sup = child("die-after", max_restarts=2, on_failure=failures.append)
        await sup.start()
        for _ in range(300):
            if sup.state == "failed":
                break
            await asyncio.sleep(0.05)
        assert sup.state == "failed" and not sup.healthy
        await sup.stop()
        return failures

    failures = run(scenario())
    assert len(failures) == 1 and "gave up after 2 restart(s)" in failures[0] and "code 1" in failures[0]
    assert child.starts() == 3


def test_unresponsive_child_is_killed_and_restarted(child: Any) -> None:
    async def scenario() -> None:
        failures: list[str] = []
        sup = child("unresponsive", max_restarts=1, liveness_interval=0.2, liveness_failures=2,
                    on_failure=failures.append)
        await sup.start()
        for _ in range(300):
            if sup.state == "failed":
                break
            await asyncio.sleep(0.05)
        assert failures and "stopped answering its health check" in failures[0]
        await sup.stop()

    run(scenario())
    assert child.starts() == 2


def test_missing_executable_is_child_failed(tmp_path: Path) -> None:
    async def scenario() -> None:
        sup = ChildSupervisor([str(tmp_path / "nope")], None, "http://127.0.0.1:9/health")
        with pytest.raises(ChildFailed, match="could not start"):
            await sup.start()

    run(scenario())


# ------------------------------------------------------------------------------------ VllmBackend, fake vllm binary


def test_vllm_backend_end_to_end_with_fake_vllm(tmp_path: Path) -> None:
    bindir = tmp_path / "bin"
    exe = write_fake_vllm(bindir)
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    log = tmp_path / "argv.log"
    env = {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}", "FAKE_VLLM_LOG": str(log),
           "GPTOSS_API_KEY": "front-key-never-to-child"}
    opts = VllmOptions(model_dir=model, system_start_date="2026-01-02", executable=str(exe))
    failures: list[str] = []
    used: list[VllmOptions] = []

    async def scenario() -> None:
        b = VllmBackend(opts, env=env, start_timeout=30, stop_grace=3, on_failure=failures.append,
                        on_output=lambda line: None, default_reasoning_effort="low")
        await b.start()
        used.append(b.options)
        try:
            assert await b.ready() and b.max_model_len == 8192
            reply = await b.complete("chat", {"model": "gpt-oss-20b", "messages": [
                {"role": "user", "content": "hi"}]}, "gpt-oss-20b")
            assert reply["choices"][0]["message"]["reasoning_content"] == "User asks capital."
            stream = await b.open_stream("chat", {"messages": [{"role": "user", "content": "hi"}], "stream": True},
                                         "gpt-oss-20b")
            chunks = [c async for c in stream]
            assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]) == "Paris."
        finally:
            await b.close()
        assert not await b.ready() and b.supervisor.state == "stopped"

    run(scenario(), timeout=90)
    argv, flags, _pid = log.read_text().split("\n")
    assert argv.split("\0") == vllm_argv(used[0])[1:]
    assert flags == "12026-01-02" and not failures


def test_vllm_backend_start_failure_is_could_not_run(tmp_path: Path) -> None:
    exe = tmp_path / "vllm"
    exe.write_text(f"#!{sys.executable}\nimport sys\nprint('RuntimeError: No CUDA GPUs are available')\nsys.exit(1)\n")
    exe.chmod(0o755)
    opts = VllmOptions(model_dir=tmp_path, executable=str(exe))

    async def scenario() -> None:
        b = VllmBackend(opts, env=dict(os.environ), start_timeout=20, on_output=lambda line: None)
        with pytest.raises(CouldNotRun, match="No CUDA GPUs"):
            await b.start()
        await b.close()

    run(scenario())


# ------------------------------------------------------------------------------ the child is private to this user


def tcp_listeners(pid: int) -> list[str]:
    """Local addresses of the TCP sockets process ``pid`` listens on (from /proc)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = []
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                found.append(fields[1])
    return found


def connect_as_nobody(path: str) -> str:
    """Try to reach the Unix socket ``path`` from another user (uid 65534) in a forked child; return what happened."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the forked child
        import socket

        outcome = b"connected"
        try:
            os.setgid(65534)
            os.setuid(65534)
            with socket.socket(socket.AF_UNIX) as s:
                s.connect(path)
        except PermissionError:
            outcome = b"permission denied"
        except OSError as exc:
            outcome = type(exc).__name__.encode()
        os.write(write, outcome)
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    with os.fdopen(read, "rb") as r:
        return r.read().decode()


def test_the_vllm_child_is_reachable_only_by_this_user(tmp_path: Path) -> None:
    """vLLM serves POST /invocations without its API key: so the child listens on no TCP port at all, only on a
    Unix socket in a private 0700 folder (socket 0600) that other local users cannot open."""
    bindir = tmp_path / "bin"
    exe = write_fake_vllm(bindir)
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    env = {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}"}
    opts = VllmOptions(model_dir=model, executable=str(exe))

    async def scenario() -> None:
        import httpx

        b = VllmBackend(opts, env=env, start_timeout=30, stop_grace=3, on_output=lambda line: None)
        await b.start()
        try:
            pid = b.supervisor.pid
            assert pid is not None and tcp_listeners(pid) == []
            sock = b.options.socket_path
            assert sock is not None and sock.is_socket()
            assert sock.parent.stat().st_mode & 0o777 == 0o700 and sock.stat().st_mode & 0o077 == 0
            assert sock.parent.stat().st_uid == os.getuid()
            async with httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(uds=str(sock))) as mine:
                r = await mine.post("http://localhost/invocations", json={"messages": []})
                assert r.status_code == 200  # no key needed on that route: only the socket protects it
            if os.getuid() == 0:
                assert connect_as_nobody(str(sock)) == "permission denied"
            reply = await b.complete("chat", {"messages": [{"role": "user", "content": "hi"}]}, "gpt-oss-20b")
            assert reply["choices"][0]["message"]["content"] == "Paris."
        finally:
            await b.close()
        assert not sock.exists() and not sock.parent.exists()

    run(scenario(), timeout=90)


def test_a_vllm_without_uds_is_a_clear_error(tmp_path: Path) -> None:
    bindir = tmp_path / "bin"
    exe = write_fake_vllm(bindir)
    (tmp_path / "config.json").write_text("{}")
    env = {**os.environ, "FAKE_VLLM_NO_UDS": "1"}

    async def scenario() -> None:
        b = VllmBackend(VllmOptions(model_dir=tmp_path, executable=str(exe)), env=env, start_timeout=30,
                        on_output=lambda line: None)
        with pytest.raises(CouldNotRun, match="no --uds option"):
            await b.start()
        await b.close()

    run(scenario())
