"""The server under load, over real HTTP on 127.0.0.1 (uvicorn + httpx), with a scripted engine.

64 clients vs --max-concurrency 2 --max-queue 8, disconnects, timeouts, /metrics, the response cache (memory and a
real redis-server), the access log.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gptoss_cli.serve.openai.app import create_app
from gptoss_cli.serve.engines.scripted import ScriptedEngine
from gptoss_cli.serve.settings import ServeSettings
from tests.redis_fixtures import redis_server, redis_url  # noqa: F401 - fixtures
from tests.serve_fixtures import FINAL, live_server

pytestmark = pytest.mark.timeout(120)

CHAT = "/v1/chat/completions"
LONG = "<|channel|>final<|message|>" + "word " * 150 + "<|return|>"


def body(**extra):
    return {"model": "gpt-oss-20b", "messages": [{"role": "user", "content": "Hi"}], **extra}


def make_app(script=(FINAL,), delay=0.0, lines=None, **settings):
    engine = ScriptedEngine(list(script), delay=delay)
    settings.setdefault("current_date", "2025-06-01")
    app = create_app(ServeSettings(**settings), engine,
                     emit_access_log=(lines.append if lines is not None else (lambda line: None)))
    return app, engine


def scrape(base: str) -> dict[str, float]:
    text = httpx.get(base + "/metrics", timeout=5).text
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
            out[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
    return out


def wait_until(predicate, timeout: float, step: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


def test_64_clients_against_2_slots_and_8_queue_get_200_or_429():
    app, engine = make_app(script=[FINAL], delay=0.01, max_concurrency=2, max_queue=8)

    async def burst(base: str):
        limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
        async with httpx.AsyncClient(base_url=base, timeout=30, limits=limits) as client:
            async def one(i):
                return await client.post(CHAT, json=body(temperature=0.7, max_tokens=200))

            async def probe():
                await asyncio.sleep(0.1)
                t0 = time.monotonic()
                r = await client.get("/health")
                return r.status_code, time.monotonic() - t0

            results = await asyncio.gather(*[one(i) for i in range(64)], probe())
            return results[:-1], results[-1]

    with live_server(app) as base:
        responses, (health_status, health_latency) = asyncio.run(asyncio.wait_for(burst(base), 60))
        statuses = [r.status_code for r in responses]
        assert set(statuses) <= {200, 429}, statuses
        ok = [r for r in responses if r.status_code == 200]
        refused = [r for r in responses if r.status_code == 429]
        assert len(ok) >= 10 and len(refused) >= 1
        for r in refused:
            assert int(r.headers["retry-after"]) >= 1
            err = r.json()["error"]
            assert err["type"] == "rate_limit_error" and err["code"] == "overloaded" and err["message"]
        for r in ok:
            assert r.json()["choices"][0]["message"]["content"] == "Hello there!"
        assert health_status == 200 and health_latency < 1.0
        m = scrape(base)
        assert m["gptoss_requests_in_flight"] == 0 and m["gptoss_queue_depth"] == 0
        assert m["gptoss_rejections_total{reason=overloaded}"] == len(refused)
        assert m[f"gptoss_requests_total{{route={CHAT},status=429}}"] == len(refused)
        assert httpx.post(base + CHAT, json=body(), timeout=10).status_code == 200


def test_stream_disconnect_returns_in_flight_to_zero_within_one_second():
    app, engine = make_app(script=[LONG], delay=0.02, max_concurrency=2)
    with live_server(app) as base:
        with httpx.Client(base_url=base, timeout=10) as client:
            with client.stream("POST", CHAT, json=body(stream=True, max_tokens=2000)) as r:
                assert r.status_code == 200
                lines = r.iter_lines()
                for _ in range(6):
                    next(lines)
                assert scrape(base)["gptoss_requests_in_flight"] == 1
        t0 = time.monotonic()
        assert wait_until(lambda: scrape(base)["gptoss_requests_in_flight"] == 0, 1.0), "slot still held after 1 s"
        assert time.monotonic() - t0 <= 1.0
        assert wait_until(lambda: engine.cancelled == 1, 1.0)
        assert scrape(base)["gptoss_requests_cancelled_total"] == 1


def test_non_stream_disconnect_cancels_generation():
    lines: list[str] = []
    app, engine = make_app(script=[LONG], delay=0.02, lines=lines)
    with live_server(app) as base:
        port = int(base.rsplit(":", 1)[1])
        payload = json.dumps(body(max_tokens=2000)).encode()
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        sock.sendall(b"POST " + CHAT.encode() + b" HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                     b"Content-Length: " + str(len(payload)).encode() + b"\r\n\r\n" + payload)
        assert wait_until(lambda: scrape(base)["gptoss_requests_in_flight"] == 1, 5)
        sock.close()
        assert wait_until(lambda: scrape(base)["gptoss_requests_in_flight"] == 0, 1.0)
        assert wait_until(lambda: engine.cancelled == 1, 1.0)
        assert wait_until(lambda: any("status=499" in line for line in lines), 2.0), lines


def test_request_timeout_is_a_504_envelope_and_frees_the_slot():
    app, _ = make_app(script=[LONG], delay=0.02, request_timeout=0.3, max_concurrency=1)
    with live_server(app) as base:
        r = httpx.post(base + CHAT, json=body(max_tokens=2000), timeout=10)
        assert r.status_code == 504
        err = r.json()["error"]
        assert err["code"] == "timeout" and "0.3" in err["message"]
        m = scrape(base)
        assert m["gptoss_requests_in_flight"] == 0 and m["gptoss_request_timeouts_total"] == 1


def test_metrics_exposition_parses_and_moves():
    app, _ = make_app()
    with live_server(app) as base:
        before = scrape(base)
        assert before["gptoss_requests_in_flight"] == 0
        assert before["gptoss_model_load_seconds"] >= 0
        assert httpx.post(base + CHAT, json=body(temperature=0.5), timeout=10).status_code == 200
        assert httpx.post(base + CHAT, json=body(model="nope"), timeout=10).status_code == 404
        after = scrape(base)
        assert after[f"gptoss_requests_total{{route={CHAT},status=200}}"] == 1
        assert after[f"gptoss_requests_total{{route={CHAT},status=404}}"] == 1
        assert after[f"gptoss_time_to_first_token_seconds_count{{route={CHAT}}}"] == 1
        assert after[f"gptoss_request_duration_seconds_count{{route={CHAT}}}"] == 2
        assert after["gptoss_prompt_tokens_total"] > 0 and after["gptoss_completion_tokens_total"] > 0
        assert after["gptoss_max_concurrency"] == 4


def _content_of_stream(text: str) -> str:
    parts = []
    for line in text.split("\n\n"):
        if line.startswith("data: {"):
            for choice in json.loads(line[6:])["choices"]:
                parts.append(choice["delta"].get("content") or "")
    return "".join(parts)


def test_cache_hit_over_http_memory_including_stream_replay():
    lines: list[str] = []
    app, engine = make_app(lines=lines)
    with live_server(app) as base:
        first = httpx.post(base + CHAT, json=body(temperature=0), timeout=10).json()
        second = httpx.post(base + CHAT, json=body(temperature=0), timeout=10).json()
        streamed = httpx.post(base + CHAT, json=body(temperature=0, stream=True), timeout=10).text
        assert first["choices"][0]["message"] == second["choices"][0]["message"]
        assert _content_of_stream(streamed) == first["choices"][0]["message"]["content"] == "Hello there!"
        assert streamed.endswith("data: [DONE]\n\n")
        assert len(engine.prompts) == 1
        m = scrape(base)
        assert m["gptoss_cache_hits_total"] == 2 and m["gptoss_cache_misses_total"] == 1
    chat_lines = [line for line in lines if CHAT in line]
    assert [("cache=miss" in line, "cache=hit" in line) for line in chat_lines] == [(1, 0), (0, 1), (0, 1)]


def test_no_cache_setting_disables_it():
    app, engine = make_app(cache=False)
    with live_server(app) as base:
        for _ in range(2):
            assert httpx.post(base + CHAT, json=body(temperature=0), timeout=10).status_code == 200
        assert len(engine.prompts) == 2
        assert scrape(base)["gptoss_cache_misses_total"] == 0


def test_redis_cache_is_shared_between_servers(redis_url):  # noqa: F811
    app_a, engine_a = make_app(cache_url=redis_url)
    app_b, engine_b = make_app(cache_url=redis_url)
    with live_server(app_a) as a, live_server(app_b) as b:
        ra = httpx.post(a + CHAT, json=body(seed=42, temperature=0.8), timeout=10).json()
        rb = httpx.post(b + CHAT, json=body(seed=42, temperature=0.8), timeout=10).json()
        assert ra["choices"][0]["message"]["content"] == rb["choices"][0]["message"]["content"]
        assert len(engine_a.prompts) == 1 and len(engine_b.prompts) == 0
        assert scrape(b)["gptoss_cache_hits_total"] == 1


def test_access_log_json_has_no_prompt_text():
    lines: list[str] = []
    app, _ = make_app(lines=lines, log_format="json")
    with live_server(app) as base:
        httpx.post(base + CHAT, json={"model": "gpt-oss-20b", "messages": [
            {"role": "user", "content": "my bank password is hunter2"}]}, timeout=10)
        assert wait_until(lambda: any(CHAT in line for line in lines), 2)
    record = json.loads(next(line for line in lines if CHAT in line))
    assert record["status"] == 200 and record["route"] == CHAT and record["prompt_tokens"] > 0
    assert "hunter2" not in "\n".join(lines) and "Hello there" not in "\n".join(lines)


def test_bad_layer_settings_are_config_errors():
    from gptoss_cli.errors import ConfigError

    for bad in ({"log_format": "xml"}, {"max_concurrency": 0}, {"max_queue": -1}):
        with pytest.raises(ConfigError):
            make_app(**bad)


def test_listening_socket_is_tcp_so_nagle_is_off():
    """runner.bind must create an IPPROTO_TCP socket: asyncio sets TCP_NODELAY on accepted connections only then,
    and without it every small SSE write waits ~40 ms for the client's delayed ACK."""
    import socket as socketlib

    from gptoss_cli.serve.runtime import bind

    sock = bind("127.0.0.1", 0)
    try:
        assert sock.proto == socketlib.IPPROTO_TCP
    finally:
        sock.close()


def test_streams_dropped_mid_way_are_logged_and_counted_as_499():
    """20 streaming clients read a few events, then drop the connection: every one is 499 in the log and metrics."""
    lines: list[str] = []
    app, engine = make_app(script=[LONG], delay=0.01, lines=lines, max_concurrency=4, max_queue=32)
    with live_server(app) as base:
        port = int(base.rsplit(":", 1)[1])
        payload = json.dumps(body(stream=True, max_tokens=2000)).encode()
        for _ in range(20):
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            sock.sendall(b"POST " + CHAT.encode() + b" HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                         b"Content-Length: " + str(len(payload)).encode() + b"\r\n\r\n" + payload)
            seen = b""
            while seen.count(b"data: ") < 3:
                chunk = sock.recv(4096)
                assert chunk, "server closed the stream early"
                seen += chunk
            sock.close()
        chats = lambda: [line for line in lines if f"route={CHAT} " in line]  # noqa: E731
        assert wait_until(lambda: len(chats()) == 20, 5.0), lines
        assert all("status=499" in line for line in chats()), [line for line in chats() if "status=499" not in line]
        m = scrape(base)
        assert m[f"gptoss_requests_total{{route={CHAT},status=499}}"] == 20
        assert m.get(f"gptoss_requests_total{{route={CHAT},status=200}}", 0) == 0


def test_a_malformed_redis_entry_is_a_miss_over_http(redis_url):  # noqa: F811
    """The fault suite's case: garbage under the request's key → the request is answered by the model, and the
    entry is replaced by a good one."""
    import redis

    app, engine = make_app(cache_url=redis_url)
    raw = redis.Redis.from_url(redis_url)
    try:
        with live_server(app) as base:
            first = httpx.post(base + CHAT, json=body(temperature=0), timeout=10)
            assert first.status_code == 200
            keys = raw.keys("gptoss:resp:*")
            assert len(keys) == 1
            raw.set(keys[0], b"garbage")
            second = httpx.post(base + CHAT, json=body(temperature=0), timeout=10)
            assert second.status_code == 200
            assert second.json()["choices"][0]["message"] == first.json()["choices"][0]["message"]
            assert len(engine.prompts) == 2
            third = httpx.post(base + CHAT, json=body(temperature=0), timeout=10)
            assert third.status_code == 200 and len(engine.prompts) == 2  # the good entry was stored again
    finally:
        raw.close()
