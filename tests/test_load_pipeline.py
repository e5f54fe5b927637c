"""Pipeline (cache → scheduler → engine) and the access-log middleware, on a minimal ASGI app of our own.

The full server is tested in test_load_http.py; here the pieces are checked alone, including a real uvicorn on
127.0.0.1 for the disconnect of a non-streaming request.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time

import httpx
import pytest

from gptoss_cli.serve.openai.accesslog import AccessLogMiddleware, current_record, format_line, RequestRecord
from gptoss_cli.serve.generation.cache import MemoryCache
from gptoss_cli.serve.engines.interface import SamplingParams
from gptoss_cli.serve.engines.scripted import ByteTokenizer, ScriptedEngine
from gptoss_cli.serve.generation.metrics import ServeMetrics
from gptoss_cli.serve.generation.pipeline import Pipeline
from gptoss_cli.serve.generation.scheduler import Scheduler
from tests.ports import free_port as _free_port

pytestmark = pytest.mark.timeout(60)

ANSWER = "<|channel|>final<|message|>Hello there<|return|>"
STOPS = (200002, 200012)
GREEDY = SamplingParams(max_tokens=64, temperature=0.0, stop_token_ids=STOPS)


def make(delay: float = 0.0, cache: bool = True, **sched):
    engine = ScriptedEngine([ANSWER], delay=delay)
    metrics = ServeMetrics()
    scheduler = Scheduler(on_event=metrics.scheduler_event, **sched)
    metrics.watch_scheduler(scheduler)
    pipe = Pipeline(engine, scheduler, cache=MemoryCache() if cache else None, metrics=metrics,
                              model_id="test-model")
    return pipe, engine, scheduler, metrics


def asgi_app(pipe: Pipeline):
    """POST → run the pipeline on the body's text; JSON answer with the token count."""

    async def app(scope, receive, send):
        body = b""
        while True:
            msg = await receive()
            body += msg.get("body", b"")
            if not msg.get("more_body"):
                break
        req = json.loads(body or b"{}")
        params = SamplingParams(max_tokens=req.get("max_tokens", 64), temperature=req.get("temperature", 0.0),
                                seed=req.get("seed"), stop_token_ids=STOPS)
        tokens = [t async for t in pipe.generate(ByteTokenizer().encode(req.get("prompt", "hi")), params)]
        payload = json.dumps({"n": len(tokens)}).encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": payload})

    return app


def test_cache_hit_skips_the_engine_and_replays_the_same_tokens():
    async def main():
        pipe, engine, _, metrics = make()
        first = [t async for t in pipe.generate([1, 2, 3], GREEDY)]
        second = [t async for t in pipe.generate([1, 2, 3], GREEDY)]
        assert first == second == ByteTokenizer().encode(ANSWER)
        assert len(engine.prompts) == 1
        assert metrics.cache_hits._value.get() == 1 and metrics.cache_misses._value.get() == 1
        # sampled without a seed: never cached
        params = SamplingParams(max_tokens=64, temperature=0.9, stop_token_ids=STOPS)
        [t async for t in pipe.generate([1, 2, 3], params)]
        [t async for t in pipe.generate([1, 2, 3], params)]
        assert len(engine.prompts) == 3

    asyncio.run(asyncio.wait_for(main(), 20))


def test_consumer_stopping_at_the_stop_token_still_caches():
    async def main():
        pipe, engine, _, _ = make()
        it = pipe.generate([9], GREEDY)
        async for tok in it:
            if tok in STOPS:
                break
        await it.aclose()
        assert [t async for t in pipe.generate([9], GREEDY)] == ByteTokenizer().encode(ANSWER)
        assert len(engine.prompts) == 1

    asyncio.run(asyncio.wait_for(main(), 20))


def test_interrupted_generation_is_not_cached():
    async def main():
        pipe, engine, sched, _ = make()
        it = pipe.generate([7], GREEDY)
        await it.__anext__()
        await it.aclose()
        assert sched.in_flight == 0
        [t async for t in pipe.generate([7], GREEDY)]
        assert len(engine.prompts) == 2

    asyncio.run(asyncio.wait_for(main(), 20))


def test_no_cache_mode():
    async def main():
        pipe, engine, _, _ = make(cache=False)
        for _ in range(2):
            [t async for t in pipe.generate([1], GREEDY)]
        assert len(engine.prompts) == 2

    asyncio.run(asyncio.wait_for(main(), 20))


def _client(app):
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


def test_access_log_line_fields_and_privacy():
    async def main():
        pipe, _, _, metrics = make()
        lines: list[str] = []
        app = AccessLogMiddleware(asgi_app(pipe), fmt="json", metrics=metrics, emit=lines.append,
                                  decode=ByteTokenizer().decode)
        async with _client(app) as c:
            r1 = await c.post("/v1/chat/completions?api_key=hunter2", json={"prompt": "my secret plan"},
                              headers={"x-request-id": "abc-123"})
            r2 = await c.post("/v1/chat/completions", json={"prompt": "my secret plan"},
                              headers={"x-request-id": "bad id with spaces"})
        assert r1.status_code == r2.status_code == 200
        assert r1.headers["x-request-id"] == "abc-123"
        assert len(r2.headers["x-request-id"]) == 32
        first, second = (json.loads(line) for line in lines)
        assert first["id"] == "abc-123" and first["route"] == "/v1/chat/completions"
        assert first["status"] == 200 and first["cache"] == "miss" and second["cache"] == "hit"
        assert first["prompt_tokens"] == len("my secret plan")
        assert first["completion_tokens"] == len(ByteTokenizer().encode(ANSWER))
        assert first["ttft_ms"] is not None and first["latency_ms"] >= first["ttft_ms"]
        text = "\n".join(lines)
        assert "secret plan" not in text and "Hello there" not in text and "hunter2" not in text
        assert metrics.requests.labels(route="/v1/chat/completions", status="200")._value.get() == 2

    asyncio.run(asyncio.wait_for(main(), 20))


def test_log_prompts_includes_text_only_when_asked():
    async def main():
        pipe, _, _, _ = make()
        pipe.log_prompts = True
        lines: list[str] = []
        app = AccessLogMiddleware(asgi_app(pipe), fmt="text", log_prompts=True, emit=lines.append,
                                  decode=ByteTokenizer().decode)
        async with _client(app) as c:
            await c.post("/v1/completions", json={"prompt": "tell me"})
        assert 'prompt="tell me"' in lines[0]
        assert "Hello there" in lines[0]
        assert "status=200" in lines[0] and "cache=miss" in lines[0]

    asyncio.run(asyncio.wait_for(main(), 20))


def test_text_format_quotes_values_with_spaces():
    rec = RequestRecord(id="x", method="GET", path="/a b", status=404, latency=0.01)
    line = format_line(rec, "text")
    assert 'route="/a b"' in line and "status=404" in line and "cache=-" in line


def test_record_is_reachable_from_the_handler_context():
    seen = []

    async def app(scope, receive, send):
        seen.append(current_record())
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def main():
        async with _client(AccessLogMiddleware(app, emit=lambda line: None)) as c:
            await c.get("/health")

    asyncio.run(asyncio.wait_for(main(), 10))
    assert seen[0] is not None and seen[0].path == "/health"
    assert current_record() is None



@contextlib.contextmanager
def uvicorn_thread(app):
    import uvicorn

    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_non_streaming_disconnect_frees_the_slot_within_one_second():
    pipe, engine, sched, metrics = make(delay=0.05)
    lines: list[str] = []
    app = AccessLogMiddleware(asgi_app(pipe), metrics=metrics, emit=lines.append)
    with uvicorn_thread(app) as port:
        body = json.dumps({"prompt": "slow", "max_tokens": 64}).encode()
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        deadline = time.monotonic() + 5
        while sched.in_flight == 0:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        sock.close()
        t0 = time.monotonic()
        while sched.in_flight and time.monotonic() - t0 < 1.0:
            time.sleep(0.01)
        assert sched.in_flight == 0, "slot not freed within 1 s of the disconnect"
        deadline = time.monotonic() + 2
        while not lines and time.monotonic() < deadline:
            time.sleep(0.01)
    assert engine.cancelled == 1
    assert metrics.cancelled._value.get() == 1
    assert "status=499" in lines[0] and "error=ClientGone" in lines[0]


def test_draining_refuses_even_cache_hits():
    from gptoss_cli.serve.generation.scheduler import Draining

    async def main():
        pipe, _, sched, metrics = make()
        [t async for t in pipe.generate([1], GREEDY)]
        sched.start_draining()
        with pytest.raises(Draining):
            [t async for t in pipe.generate([1], GREEDY)]
        assert metrics.rejections.labels(reason="draining")._value.get() == 1

    asyncio.run(asyncio.wait_for(main(), 20))
