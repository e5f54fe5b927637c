"""Graceful shutdown: on SIGTERM/SIGINT keep listening but refuse new work (503), let in-flight requests finish up to
``drain_timeout``, cancel the rest, then stop uvicorn and return normally (exit code 0).

uvicorn alone would close the listening socket at once (new clients see "connection refused", not 503) and re-raise
the captured signal after shutdown (exit status -15 for SIGTERM). ``DrainingServer`` changes both: the first signal
starts the drain, a second one forces the exit: the drain is abandoned, every open connection is closed (their
generations stop as for a client that went away), the lifespan shutdown is skipped, and ``forced`` is set so the
caller can report it (exit 130). ``on_force`` runs in the signal handler, e.g. to arm a hard-exit watchdog against
a worker thread that would keep the interpreter alive. uvicorn is imported inside ``serve_app`` only.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Any, Awaitable, Callable

log = logging.getLogger("gptoss.serve")


def make_server(app: Any, config: Any, drain: Callable[[float], Awaitable[bool]], drain_timeout: float,
                on_force: Callable[[], None] | None = None) -> Any:
    """A ``uvicorn.Server`` subclass instance that drains through ``drain(timeout)`` before it exits."""
    import uvicorn

    class DrainingServer(uvicorn.Server):
        def __init__(self, cfg: Any) -> None:
            super().__init__(cfg)
            self._drain_task: asyncio.Task | None = None
            self._loop: asyncio.AbstractEventLoop | None = None
            self.signalled: list[int] = []
            self.forced = False

        async def serve(self, sockets: Any = None) -> None:
            self._loop = asyncio.get_running_loop()
            await super().serve(sockets)

        def handle_exit(self, sig: int, frame: Any) -> None:  # runs as the signal handler (main thread)
            self.signalled.append(sig)
            if len(self.signalled) > 1:
                self._force(sig)
            elif self._loop is None or not self.started:
                self.should_exit = True  # before the server is up: nothing to drain, stop now
            else:
                self._loop.call_soon_threadsafe(self._start_drain, sig)

        def _force(self, sig: int) -> None:
            log.warning("received %s again: stopping now, requests still running are cut off",
                        signal.Signals(sig).name)
            self.forced = self.force_exit = self.should_exit = True
            if on_force is not None:
                on_force()
            if self._loop is not None:
                self._loop.call_soon_threadsafe(self._cut_off)

        async def shutdown(self, sockets: Any = None) -> None:
            await super().shutdown(sockets)
            if self.forced:  # uvicorn skips the app's shutdown when forced: give it a moment, never more
                try:
                    await asyncio.wait_for(self.lifespan.shutdown(), timeout=2.0)
                except (asyncio.TimeoutError, Exception):  # noqa: BLE001 - exiting regardless
                    pass

        def _cut_off(self) -> None:
            if self._drain_task is not None:
                self._drain_task.cancel()
            for connection in list(self.server_state.connections):
                transport = getattr(connection, "transport", None)
                if transport is not None:
                    transport.close()  # the handler sees a disconnect; its generation stops

        def _start_drain(self, sig: int) -> None:
            if self._drain_task is None:
                log.warning("received %s: draining (up to %g s), new requests get 503",
                            signal.Signals(sig).name, drain_timeout)
                self._drain_task = asyncio.ensure_future(self._drain_then_exit())

        async def _drain_then_exit(self) -> None:
            try:
                clean = await drain(drain_timeout)
                if not clean:
                    log.warning("drain timeout reached: cancelled the requests still running")
            except asyncio.CancelledError:
                pass  # a second signal: stopping without the drain
            except Exception:  # noqa: BLE001 - shutting down regardless
                log.exception("drain failed")
            finally:
                self.should_exit = True

    return DrainingServer(config)


def serve_app(
    app: Any,
    *,
    host: str,
    port: int,
    drain: Callable[[float], Awaitable[bool]],
    drain_timeout: float,
    log_level: str = "warning",
    **uvicorn_kwargs: Any,
) -> Any:
    """Run ``app`` with uvicorn until a signal has drained it; returns the server (``.signalled`` lists signals)."""
    import uvicorn

    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        access_log=False,  # our own access log (serve/openai/accesslog.py) replaces uvicorn's
        timeout_graceful_shutdown=5,
        **uvicorn_kwargs,
    )
    server = make_server(app, config, drain, drain_timeout)
    server.run()
    return server


__all__ = ["make_server", "serve_app"]
