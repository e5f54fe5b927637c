"""Run the app under uvicorn: bind first (so "address in use" is our one-line error), serve until SIGINT/SIGTERM.

Core code: no typer, no sys.exit. uvicorn is imported inside ``serve_app``.
"""

from __future__ import annotations

import json
import shlex
import socket
from typing import Any, Callable

from gptoss_cli.errors import CouldNotRun, GptossError, Interrupted
from gptoss_cli.serve.engines.interface import Engine
from gptoss_cli.serve.settings import ServeSettings


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
    return " ".join(shlex.quote(p) for p in parts) + auth + " -d " + shlex.quote(body)


def ready_line(settings: ServeSettings, url: str, description: str, key_source: str = "env:GPTOSS_API_KEY") -> str:
    return (
        f"gptoss: ready: {settings.served_model_name} ({description}) at {url}/v1 — try: "
        f"{example_curl(settings, url, key_source)}"
    )


def serve_app(
    settings: ServeSettings,
    engine: Engine,
    sock: socket.socket,
    *,
    on_ready: Callable[[], None] | None = None,
    log_level: str = "warning",
    configure: Callable[[Any], None] | None = None,
    on_force: Callable[[], None] | None = None,
) -> None:
    """Serve until a signal stops uvicorn. A model that fails to load stops the server and raises CouldNotRun.

    ``configure(app)`` may add layers (scheduler, metrics, …) to the app before it starts; when it sets
    ``app.state.drain``, shutdown signals drain in-flight requests first (``serve/shutdown.py``). A second signal
    cuts the drain short and raises ``Interrupted`` (exit 130); ``on_force`` is called from its signal handler.
    """
    import uvicorn

    from gptoss_cli.serve.openai.app import create_app

    failure: list[BaseException] = []
    server: uvicorn.Server | None = None

    def load_failed(exc: BaseException) -> None:
        failure.append(exc)
        if server is not None:
            server.should_exit = True

    app = create_app(settings, engine, on_ready=on_ready, on_load_error=load_failed)
    if configure is not None:
        configure(app)
    from gptoss_cli.serve.logfmt import logging_config

    log_config = logging_config(settings.log_format, log_level.upper())
    if log_config is not None:
        import logging

        logging.captureWarnings(True)  # warnings.warn (e.g. from transformers) as JSON log lines too
    config = uvicorn.Config(
        app,
        **({"log_config": log_config} if log_config is not None else {}),
        log_level=log_level,
        lifespan="on",
        access_log=False,
        timeout_graceful_shutdown=max(1, int(settings.drain_timeout)),
        server_header=False,
    )
    drain = getattr(app.state, "drain", None)  # set by the load layers (serve/openai/layers.py): drain on SIGTERM/SIGINT
    if callable(drain):
        from gptoss_cli.serve.shutdown import make_server

        server = make_server(app, config, drain, settings.drain_timeout, on_force=on_force)
    else:
        server = uvicorn.Server(config)
    server.run(sockets=[sock])
    if getattr(server, "forced", False):
        raise Interrupted("stopped by a second signal; requests still running were cut off")
    if failure:
        exc = failure[0]
        if isinstance(exc, GptossError):
            raise exc
        detail = " ".join(str(exc).split()) or type(exc).__name__
        raise CouldNotRun(f"the model could not be loaded: {type(exc).__name__}: {detail}",
                          hint="check the model folder, or run with GPTOSS_DEBUG=1") from None


__all__ = ["base_url", "bind", "example_curl", "ready_line", "serve_app"]
