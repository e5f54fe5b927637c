"""Graceful shutdown: on SIGTERM/SIGINT keep listening but refuse new work (503), let in-flight requests finish up to
``drain_timeout``, cancel the rest, then stop uvicorn and return normally (exit code 0).

uvicorn alone would close the listening socket at once (new clients see "connection refused", not 503) and re-raise
the captured signal after shutdown (exit status -15 for SIGTERM). ``DrainingServer`` changes both: the first signal
starts the drain, a second one forces the exit. uvicorn is imported inside ``serve_app`` only.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Any, Awaitable, Callable

log = logging.getLogger("gptoss.serve")


def make_server(app: Any, config: Any, drain: Callable[[float], Awaitable[bool]], drain_timeout: float) -> Any:
    """A ``uvicorn.Server`` subclass instance that drains through ``drain(timeout)`` before it exits."""
    import uvicorn

    class DrainingServer(uvicorn.Server):
        def __init__(self, cfg: Any) -> None:
            super().__init__(cfg)
            self._drain_task: asyncio.Task | None = None
            self._loop: asyncio.AbstractEventLoop | None = None
            self.signalled: list[int] = []

        async def serve(self, sockets: Any = None) -> None:
            self._loop = asyncio.get_running_loop()
            await super().serve(sockets)

        def handle_exit(self, sig: int, frame: Any) -> None:  # runs as the signal handler (main thread)
            self.signalled.append(sig)
            if self._drain_task is not None or self._loop is None or not self.started:
                # second signal, or before the server is up: stop now (no re-raise afterwards)
                if self.should_exit:
                    self.force_exit = True
                self.should_exit = True
                return
            self._loop.call_soon_threadsafe(self._start_drain, sig)

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
        access_log=False,  # our own access log (serve/accesslog.py) replaces uvicorn's
        timeout_graceful_shutdown=5,
        **uvicorn_kwargs,
    )
    server = make_server(app, config, drain, drain_timeout)
    server.run()
    return server


__all__ = ["make_server", "serve_app"]
