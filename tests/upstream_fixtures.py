"""A fake OpenAI-compatible upstream on 127.0.0.1 (real uvicorn, real sockets) for the upstream/vLLM tests.

By default it answers like vLLM with gpt-oss: reasoning only as ``reasoning``, tool-call ids ``chatcmpl-tool-…``,
usage in streams only when ``stream_options.include_usage`` is set. ``FakeUpstream.mode`` picks other behaviours:

    "text"        reasoning + answer (default)          "tool"       one tool call, arguments in two deltas
    "rc"          llama.cpp style: reasoning_content     "ollama"     whole tool call in one delta, id call_…
    "crlf"        CRLF framing, ``event:`` lines, comments, no [DONE]
    "gate"        first chunks, then wait for ``gate`` (a threading.Event) before the rest
    "broken"      first chunk, then the connection dies  "garbage"    200 with a non-JSON body
    "status:N"    HTTP N with a vLLM-style error body     "midstream"  an error event inside a 200 stream
    "nousage"     non-stream reply without usage         "slow"       sleeps ``delay`` s before answering
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from pathlib import Path
from typing import Any, AsyncIterator

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

UPSTREAM_KEY = "sk-upstream-SECRET-4f1e9a"



class FakeUpstream:
    def __init__(self, *, model: str = "gpt-oss-20b", max_model_len: int = 8192, require_key: str | None = None):
        self.model = model
        self.max_model_len = max_model_len
        self.require_key = require_key
        self.mode = "text"
        self.delay = 0.0
        self.gate = threading.Event()
        self.finished = threading.Event()  # set when a gated stream has sent its last byte
        self.requests: list[dict[str, Any]] = []
        self.app = Starlette(routes=[
            Route("/v1/chat/completions", self._chat, methods=["POST"]),
            Route("/v1/completions", self._completions, methods=["POST"]),
            Route("/v1/models", self._models, methods=["GET"]),
            Route("/health", self._health, methods=["GET"]),
            Route("/invocations", self._invocations, methods=["POST"]),  # vLLM serves it without the API key
        ])
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    # ----------------------------------------------------------------------------------------------- lifecycle

    def start(self) -> "FakeUpstream":
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(self.app, log_level="critical", lifespan="off", access_log=False)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]}, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("fake upstream did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
            self.gate.set()
        if self._thread is not None:
            self._thread.join(10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    # ------------------------------------------------------------------------------------------------ handlers

    async def _health(self, request: Request) -> Response:
        return Response(status_code=200)

    async def _invocations(self, request: Request) -> Response:
        return JSONResponse(self._whole(self.mode))

    async def _models(self, request: Request) -> Response:
        if denied := self._denied(request):
            return denied
        return JSONResponse({"object": "list", "data": [
            {"id": self.model, "object": "model", "created": 0, "owned_by": "vllm", "max_model_len": self.max_model_len}
        ]})

    def _denied(self, request: Request) -> Response | None:
        if self.require_key and request.headers.get("authorization") != f"Bearer {self.require_key}":
            return JSONResponse({"error": {"message": "Unauthorized"}}, status_code=401)
        return None

    async def _record(self, request: Request) -> dict[str, Any]:
        body = await request.json()
        self.requests.append({"path": request.url.path, "headers": dict(request.headers), "body": body})
        return body

    async def _completions(self, request: Request) -> Response:
        body = await self._record(request)
        if body.get("stream"):
            async def gen() -> AsyncIterator[bytes]:
                for text in ("Hel", "lo"):
                    yield _ev({"id": "cmpl-1", "object": "text_completion", "created": 1, "model": self.model,
                               "choices": [{"index": 0, "text": text, "finish_reason": None}]})
                yield _ev({"id": "cmpl-1", "object": "text_completion", "created": 1, "model": self.model,
                           "choices": [{"index": 0, "text": "", "finish_reason": "stop"}]})
                yield b"data: [DONE]\n\n"
            return StreamingResponse(gen(), media_type="text/event-stream")
        return JSONResponse({"id": "cmpl-1", "object": "text_completion", "created": 1, "model": self.model,
                             "choices": [{"index": 0, "text": "Hello", "finish_reason": "stop"}],
                             "usage": {"prompt_tokens": 2, "completion_tokens": 1, "total_tokens": 3}})

    async def _chat(self, request: Request) -> Response:
        if denied := self._denied(request):
            return denied
        body = await self._record(request)
        mode = self.mode
        if self.delay:
            await asyncio.sleep(self.delay)
        if mode.startswith("status:"):
            status = int(mode.split(":")[1])
            headers = {"Retry-After": "7"} if status in (429, 503) else {}
            msg = ("This model's maximum context length is 8192 tokens. However, you requested 9000 tokens."
                   if status == 400 else f"upstream says no ({status}) Bearer {UPSTREAM_KEY}")
            return JSONResponse({"object": "error", "message": msg, "type": "BadRequestError", "param": None,
                                 "code": status}, status_code=status, headers=headers)
        if mode == "garbage":
            return Response(b"<html>oops</html>", media_type="text/html")
        if body.get("stream"):
            usage = bool((body.get("stream_options") or {}).get("include_usage"))
            return StreamingResponse(self._stream(mode, usage), media_type="text/event-stream")
        return JSONResponse(self._whole(mode))

    def _whole(self, mode: str) -> dict[str, Any]:
        msg: dict[str, Any] = {"role": "assistant", "content": "Paris.", "reasoning": "User asks capital.",
                               "tool_calls": []}
        finish = "stop"
        if mode == "tool":
            msg = {"role": "assistant", "content": None, "reasoning": "Need weather.", "tool_calls": [
                {"id": "chatcmpl-tool-abc123", "type": "function",
                 "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]}
            finish = "tool_calls"
        elif mode == "rc":
            msg = {"role": "assistant", "content": "Paris.", "reasoning_content": "User asks capital."}
        out: dict[str, Any] = {"id": "chatcmpl-xyz", "object": "chat.completion", "created": 1, "model": self.model,
                               "choices": [{"index": 0, "message": msg, "logprobs": None, "finish_reason": finish}]}
        if mode != "nousage":
            out["usage"] = {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}
        return out

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {"id": "chatcmpl-s1", "object": "chat.completion.chunk", "created": 1, "model": self.model,
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}

    async def _stream(self, mode: str, usage: bool) -> AsyncIterator[bytes]:
        rkey = "reasoning_content" if mode == "rc" else "reasoning"
        yield _ev(self._chunk({"role": "assistant", "content": ""}))
        yield _ev(self._chunk({rkey: "User asks"}))
        if mode == "gate":
            for _ in range(1000):
                if self.gate.is_set():
                    break
                await asyncio.sleep(0.01)
        if mode == "broken":
            raise RuntimeError("upstream crashed mid-stream")
        if mode == "midstream":
            yield _ev({"error": {"message": "engine died", "type": "InternalServerError", "code": 500}})
            yield b"data: [DONE]\n\n"
            return
        yield _ev(self._chunk({rkey: " capital."}))
        finish = "stop"
        if mode == "tool":
            yield _ev(self._chunk({"tool_calls": [{"id": "chatcmpl-tool-abc123", "type": "function", "index": 0,
                                                   "function": {"name": "get_weather", "arguments": ""}}]}))
            yield _ev(self._chunk({"tool_calls": [{"index": 0, "function": {"arguments": "{\"city\": "}}]}))
            yield _ev(self._chunk({"tool_calls": [{"index": 0, "function": {"arguments": "\"Paris\"}"}}]}))
            finish = "tool_calls"
        elif mode == "ollama":
            yield _ev(self._chunk({"tool_calls": [{"id": "call_ollama1", "type": "function", "function": {
                "name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]}))
        else:
            yield _ev(self._chunk({"content": "Par"}))
            yield _ev(self._chunk({"content": "is."}))
        if mode == "crlf":
            yield b": keep-alive comment\r\n\r\nevent: message\r\nid: 7\r\ndata: " + json.dumps(
                self._chunk({}, "stop")).encode() + b"\r\n\r\n"
            self.finished.set()
            return
        yield _ev(self._chunk({}, finish))
        if usage:
            yield _ev({"id": "chatcmpl-s1", "object": "chat.completion.chunk", "created": 1, "model": self.model,
                       "choices": [], "usage": {"prompt_tokens": 11, "completion_tokens": 9, "total_tokens": 20}})
        yield b"data: [DONE]\n\n"
        self.finished.set()


FAKE_VLLM = """#!{python}
# A stand-in for the `vllm` executable: checks its argv, then serves FakeUpstream on the Unix socket --uds (as vLLM
# does: /v1/* needs VLLM_API_KEY, /invocations does not). FAKE_VLLM_LOG: where to write argv + env facts;
# FAKE_VLLM_DIE_AFTER: exit(1) after N s; FAKE_VLLM_NO_UDS: behave like a vLLM without --uds.
import os, socket, sys, threading, time
sys.path.insert(0, {repo!r})
import uvicorn
from tests.upstream_fixtures import FakeUpstream
argv = sys.argv[1:]
assert argv[0] == "serve" and "--trust-remote-code" not in argv
log = os.environ.get("FAKE_VLLM_LOG")
if log:
    with open(log, "w") as f:
        f.write("\\0".join(argv) + "\\n" + os.environ.get("HF_HUB_OFFLINE", "")
                + os.environ.get("VLLM_SYSTEM_START_DATE", "") + "\\n" + str(os.getpid()))
if os.environ.get("FAKE_VLLM_NO_UDS"):
    print("usage: vllm [-h] [-v] {{chat,complete,serve,bench,collect-env,run-batch}} ...", file=sys.stderr)
    print("vllm: error: unrecognized arguments: --uds " + argv[argv.index("--uds") + 1], file=sys.stderr)
    sys.exit(2)
die = os.environ.get("FAKE_VLLM_DIE_AFTER")
if die:
    threading.Timer(float(die), lambda: os._exit(1)).start()
names = argv[argv.index("--served-model-name") + 1]
fake = FakeUpstream(model=names, require_key=os.environ["VLLM_API_KEY"])
sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
sock.bind(argv[argv.index("--uds") + 1])  # with this process's umask, as vLLM's own server does
uvicorn.Server(uvicorn.Config(fake.app, log_level="critical", lifespan="off")).run(sockets=[sock])
"""


def write_fake_vllm(bindir: Path) -> Path:
    """Put an executable ``vllm`` stand-in into ``bindir`` and return its path."""
    import stat
    import sys

    bindir.mkdir(parents=True, exist_ok=True)
    exe = bindir / "vllm"
    exe.write_text(FAKE_VLLM.format(python=sys.executable, repo=str(Path(__file__).resolve().parent.parent)))
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    return exe


def _ev(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload).encode() + b"\n\n"
