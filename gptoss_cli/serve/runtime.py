"""Server start, signals and drain: bind first (so "address in use" is our one-line error), then ``Runtime`` serves
the app under uvicorn until SIGINT/SIGTERM has drained it.

Core code: no typer, no sys.exit. uvicorn is imported inside ``Runtime.run`` / ``make_server``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shlex
import signal
import socket
from typing import Any, Awaitable, Callable

from gptoss_cli.errors import CouldNotRun, GptossError, Interrupted
from gptoss_cli.serve.engines.interface import EngineHooks
from gptoss_cli.serve.settings import ServeSettings

log = logging.getLogger("gptoss.serve")


def bind(host: str, port: int) -> socket.socket:
    """A listening-ready TCP socket on ``host:port`` (port 0 picks a free one)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise CouldNotRun(f"cannot resolve listen address {host!r}: {exc.strerror}",
                          hint="pass --host 127.0.0.1 or a local interface address") from None
    family, _, proto, _, address = infos[0]
    # proto must say TCP: asyncio sets TCP_NODELAY on accepted connections only then (else Nagle's algorithm
    # holds back small SSE writes for ~40 ms each).
    sock = socket.socket(family, socket.SOCK_STREAM, proto or socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise CouldNotRun(f"cannot listen on {host}:{port}: {exc.strerror or exc}",
                          hint="choose another --port or stop the process using it") from None
    sock.set_inheritable(True)
    return sock


def base_url(host: str, port: int) -> str:
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else ("::1" if host == "::" else host)
    if ":" in shown:
        shown = f"[{shown}]"
    return f"http://{shown}:{port}"


def example_curl(settings: ServeSettings, url: str, key_source: str = "env:GPTOSS_API_KEY") -> str:
    """A curl line that works as printed. The key is never shown: a key from a variable is referenced as
    ``$NAME``; one from ``--api-key`` (``key_source`` "flag") or a config file gets a placeholder to fill in."""
    body = json.dumps({"model": settings.served_model_name,
                       "messages": [{"role": "user", "content": "Say hello in one sentence."}]})
    parts = ["curl", f"{url}/v1/chat/completions", "-H", "Content-Type: application/json"]
    auth = ""
    if settings.api_key:
        if key_source.startswith("env:"):
            auth = f' -H "Authorization: Bearer ${key_source[4:]}"'
        else:
            where = "--api-key" if key_source == "flag" else "serve.api_key"
            auth = " -H " + shlex.quote(f"Authorization: Bearer <the {where} value>")
    elif settings.keys_file:
        auth = " -H " + shlex.quote("Authorization: Bearer <a key from gptoss keys add>")
    return " ".join(shlex.quote(p) for p in parts) + auth + " -d " + shlex.quote(body)


def ready_line(settings: ServeSettings, url: str, description: str, key_source: str = "env:GPTOSS_API_KEY") -> str:
    return (
        f"gptoss: ready: {settings.served_model_name} ({description}) at {url}/v1 — try: "
        f"{example_curl(settings, url, key_source)}"
    )


class Runtime:
    """One server run: ``Runtime(settings, sock)``, build the engine with ``runtime.hooks``, then ``run(engine)``.

    The runtime owns the metrics the engine's hooks report to and the failure channel: a supervised child that is
    gone for good (``hooks.on_failure``) or a model that fails to load stops the server, and ``run`` raises
    ``CouldNotRun`` (exit 3). Shutdown signals drain in-flight requests first; a second signal cuts the drain short
    and ``run`` raises ``Interrupted`` (exit 130) — ``on_force`` is called from its signal handler.
    """

    def __init__(self, settings: ServeSettings, sock: socket.socket, *, log_level: str = "warning",
                 on_force: Callable[[], None] | None = None,
                 emit_access_log: Callable[[str], None] | None = None) -> None:
        from gptoss_cli.serve.generation.metrics import ServeMetrics

        self.settings = settings
        self.sock = sock
        self.log_level = log_level
        self.on_force = on_force
        self.emit_access_log = emit_access_log
        self.metrics = ServeMetrics()
        self.hooks = EngineHooks(on_step=self.metrics.batch_step, observe=self.metrics.upstream_exchange,
                                 on_failure=self._child_failed, on_event=self.metrics.engine_event)
        self._failure: list[BaseException] = []
        self._server: Any = None

    def _failed(self, exc: BaseException) -> None:
        self._failure.append(exc)
        if self._server is not None:
            self._server.should_exit = True

    def _child_failed(self, reason: str) -> None:
        self._failed(BackendFailed(f"the model server behind gptoss failed: {reason}"))

    def run(self, engine: Any, *, on_ready: Callable[[], None] | None = None) -> None:
        """Serve ``engine`` until a signal stops the server (see the class docstring for how it ends)."""
        import uvicorn

        from gptoss_cli.serve.logfmt import logging_config
        from gptoss_cli.serve.openai.app import create_app

        settings = self.settings
        app = create_app(settings, engine, metrics=self.metrics, on_ready=on_ready, on_load_error=self._failed,
                         emit_access_log=self.emit_access_log)
        log_config = logging_config(settings.log_format, self.log_level.upper())
        if log_config is not None:
            import logging

            logging.captureWarnings(True)  # warnings.warn (e.g. from transformers) as JSON log lines too
        config = uvicorn.Config(
            app,
            **({"log_config": log_config} if log_config is not None else {}),
            log_level=self.log_level,
            lifespan="on",
            access_log=False,  # our own access log (serve/openai/accesslog.py) replaces uvicorn's
            timeout_graceful_shutdown=max(1, int(settings.drain_timeout)),
            server_header=False,
        )
        server = app.state.server  # SIGHUP reloads the policy files (a bad file keeps the old one)
        hangup = server.reload_policies if server.policy is not None or server.key_policies is not None else None
        self._server = make_server(config, server.drain, settings.drain_timeout, on_force=self.on_force,
                                   on_hangup=hangup)
        self._server.run(sockets=[self.sock])
        if self._server.forced:
            raise Interrupted("stopped by a second signal; requests still running were cut off")
        if self._failure:
            exc = self._failure[0]
            if isinstance(exc, GptossError):
                raise exc
            detail = " ".join(str(exc).split()) or type(exc).__name__
            raise CouldNotRun(f"the model could not be loaded: {type(exc).__name__}: {detail}",
                              hint="check the model folder, or run with GPTOSS_DEBUG=1") from None


class BackendFailed(CouldNotRun):
    """The engine behind the front is gone for good (the vLLM child kept dying): the server exits with code 3."""


# ------------------------------------------------------------------------------------------------ graceful shutdown
# On SIGTERM/SIGINT keep listening but refuse new work (503), let in-flight requests finish up to ``drain_timeout``,
# cancel the rest, then stop uvicorn and return normally (exit code 0). uvicorn alone would close the listening
# socket at once (new clients see "connection refused", not 503) and re-raise the captured signal after shutdown
# (exit status -15 for SIGTERM). The first signal starts the drain; a second one forces the exit: the drain is
# abandoned, every open connection is closed (their generations stop as for a client that went away), the lifespan
# shutdown is skipped, and ``forced`` is set so the caller can report it (exit 130).


def make_server(config: Any, drain: Callable[[float], Awaitable[bool]], drain_timeout: float,
                on_force: Callable[[], None] | None = None, on_hangup: Callable[[], Any] | None = None) -> Any:
    """A ``uvicorn.Server`` that drains through ``drain(timeout)`` before it exits (see above); ``on_hangup`` is
    called on the event loop for each SIGHUP (the policy reload)."""
    import uvicorn

    server_class = type("DrainingServer", (_Draining, uvicorn.Server), {})
    server = server_class(config, drain, drain_timeout, on_force)
    server._on_hangup = on_hangup
    return server


class _Draining:
    """The drain behaviour, mixed into ``uvicorn.Server`` by ``make_server`` (uvicorn is imported lazily)."""

    def __init__(self, config: Any, drain: Callable[[float], Awaitable[bool]], drain_timeout: float,
                 on_force: Callable[[], None] | None) -> None:
        super().__init__(config)  # type: ignore[call-arg]
        self._drain = drain
        self._drain_timeout = drain_timeout
        self._on_force = on_force
        self._drain_task: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.signalled: list[int] = []
        self.forced = False
        self._on_hangup: Callable[[], Any] | None = None

    async def serve(self, sockets: Any = None) -> None:
        self._loop = asyncio.get_running_loop()
        hangup = self._on_hangup is not None and hasattr(signal, "SIGHUP")
        if hangup:
            try:
                self._loop.add_signal_handler(signal.SIGHUP, self._hangup)
            except (RuntimeError, ValueError, NotImplementedError):  # not the main thread (tests), or no signals
                hangup = False
        try:
            await super().serve(sockets)  # type: ignore[misc]
        finally:
            if hangup:
                self._loop.remove_signal_handler(signal.SIGHUP)

    def _hangup(self) -> None:
        try:
            assert self._on_hangup is not None
            self._on_hangup()
        except Exception:  # noqa: BLE001 - a failed reload must never stop the server
            log.exception("SIGHUP handler failed")

    def handle_exit(self, sig: int, frame: Any) -> None:  # runs as the signal handler (main thread)
        self.signalled.append(sig)
        if len(self.signalled) > 1:
            self._force(sig)
        elif self._loop is None or not self.started:  # type: ignore[attr-defined]
            self.should_exit = True  # before the server is up: nothing to drain, stop now
        else:
            self._loop.call_soon_threadsafe(self._start_drain, sig)

    def _force(self, sig: int) -> None:
        log.warning("received %s again: stopping now, requests still running are cut off", signal.Signals(sig).name)
        self.forced = self.force_exit = self.should_exit = True
        if self._on_force is not None:
            self._on_force()
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._cut_off)

    async def shutdown(self, sockets: Any = None) -> None:
        await super().shutdown(sockets)  # type: ignore[misc]
        if self.forced:  # uvicorn skips the app's shutdown when forced: give it a moment, never more
            try:
                await asyncio.wait_for(self.lifespan.shutdown(), timeout=2.0)  # type: ignore[attr-defined]
            except (asyncio.TimeoutError, Exception):  # noqa: BLE001 - exiting regardless
                pass

    def _cut_off(self) -> None:
        if self._drain_task is not None:
            self._drain_task.cancel()
        for connection in list(self.server_state.connections):  # type: ignore[attr-defined]
            transport = getattr(connection, "transport", None)
            if transport is not None:
                transport.close()  # the handler sees a disconnect; its generation stops

    def _start_drain(self, sig: int) -> None:
        if self._drain_task is None:
            log.warning("received %s: draining (up to %g s), new requests get 503", signal.Signals(sig).name,
                        self._drain_timeout)
            self._drain_task = asyncio.ensure_future(self._drain_then_exit())

    async def _drain_then_exit(self) -> None:
        try:
            clean = await self._drain(self._drain_timeout)
            if not clean:
                log.warning("drain timeout reached: cancelled the requests still running")
        except asyncio.CancelledError:
            pass  # a second signal: stopping without the drain
        except Exception:  # noqa: BLE001 - shutting down regardless
            log.exception("drain failed")
        finally:
            self.should_exit = True


__all__ = ["BackendFailed", "Runtime", "base_url", "bind", "example_curl", "make_server", "ready_line"]
