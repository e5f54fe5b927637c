"""Metrics: per-app registry, gptoss_ names, exposition parses with prometheus_client.parser and moves."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client.parser import text_string_to_metric_families

from gptoss_cli.serve.generation.metrics import ServeMetrics, route_label
from gptoss_cli.serve.generation.scheduler import QueueFull, Scheduler

pytestmark = pytest.mark.timeout(30)


def samples(metrics: ServeMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    body, content_type = metrics.render()
    assert content_type.startswith("text/plain")
    out = {}
    for family in text_string_to_metric_families(body.decode()):
        assert family.name.startswith("gptoss_"), family.name
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(metrics: ServeMetrics, name: str, **labels: str) -> float:
    return samples(metrics).get((name, tuple(sorted(labels.items()))), 0.0)


def test_every_documented_metric_is_exposed_and_prefixed():
    m = ServeMetrics()
    m.describe("1.0", "gpt-oss-20b", "scripted")
    m.watch_scheduler(Scheduler(max_concurrency=3, max_queue=7))
    names = {name for name, _ in samples(m)}
    for expected in (
        "gptoss_requests_in_flight", "gptoss_queue_depth", "gptoss_rejections_total",
        "gptoss_request_timeouts_total", "gptoss_requests_cancelled_total", "gptoss_prompt_tokens_total",
        "gptoss_completion_tokens_total", "gptoss_cache_hits_total", "gptoss_cache_misses_total",
        "gptoss_model_load_seconds", "gptoss_max_concurrency", "gptoss_max_queue", "gptoss_info",
        "gptoss_batch_size_count",
    ):
        assert expected in names, expected
    assert value(m, "gptoss_max_concurrency") == 3 and value(m, "gptoss_max_queue") == 7
    assert value(m, "gptoss_info", version="1.0", model="gpt-oss-20b", engine="scripted") == 1


def test_registries_are_per_app():
    a, b = ServeMetrics(), ServeMetrics()
    a.request_done("/v1/chat/completions", 200, 0.1)
    assert value(a, "gptoss_requests_total", route="/v1/chat/completions", status="200") == 1
    assert value(b, "gptoss_requests_total", route="/v1/chat/completions", status="200") == 0


def test_counters_and_histograms_move():
    m = ServeMetrics()
    m.request_done("/v1/chat/completions", 200, 0.2)
    m.request_done("/v1/chat/completions", 429, 0.001)
    m.request_done("/v1/models", 200, 0.001)
    m.first_token("/v1/chat/completions", 0.05)
    m.tokens(prompt=12, completion=5)
    m.cache_lookup(True)
    m.cache_lookup(False)
    m.cache_lookup(False)
    m.batch_step(3, 0.01)
    m.model_load.set(1.5)
    for name in ("rejected_overloaded", "rejected_draining", "timed_out", "cancelled", "aborted"):
        m.scheduler_event(name)
    s = samples(m)
    assert s[("gptoss_requests_total", (("route", "/v1/chat/completions"), ("status", "429")))] == 1
    assert s[("gptoss_request_duration_seconds_count", (("route", "/v1/chat/completions"),))] == 2
    assert ("gptoss_request_duration_seconds_count", (("route", "/v1/models"),)) not in s
    assert s[("gptoss_time_to_first_token_seconds_count", (("route", "/v1/chat/completions"),))] == 1
    assert s[("gptoss_prompt_tokens_total", ())] == 12
    assert s[("gptoss_completion_tokens_total", ())] == 5
    assert s[("gptoss_cache_hits_total", ())] == 1 and s[("gptoss_cache_misses_total", ())] == 2
    assert s[("gptoss_batch_size_sum", ())] == 3
    assert s[("gptoss_model_load_seconds", ())] == 1.5
    assert s[("gptoss_rejections_total", (("reason", "overloaded"),))] == 1
    assert s[("gptoss_rejections_total", (("reason", "draining"),))] == 1
    assert s[("gptoss_request_timeouts_total", ())] == 1
    assert s[("gptoss_requests_cancelled_total", ())] == 1


def test_gauges_follow_the_scheduler_live():
    async def main():
        m = ServeMetrics()
        sched = Scheduler(max_concurrency=1, max_queue=1, on_event=m.scheduler_event)
        m.watch_scheduler(sched)
        lease = await sched.acquire()
        waiter = asyncio.ensure_future(sched.acquire())
        await asyncio.sleep(0.01)
        assert value(m, "gptoss_requests_in_flight") == 1
        assert value(m, "gptoss_queue_depth") == 1
        with pytest.raises(QueueFull):
            await sched.acquire()
        assert value(m, "gptoss_rejections_total", reason="overloaded") == 1
        lease.release()
        (await waiter).release()
        assert value(m, "gptoss_requests_in_flight") == 0
        assert value(m, "gptoss_queue_depth") == 0

    asyncio.run(asyncio.wait_for(main(), 10))


def test_route_label_cardinality_is_bounded():
    assert route_label("/v1/chat/completions") == "/v1/chat/completions"
    assert route_label("/v1/models/gpt-oss-20b") == "/v1/models/{model}"
    assert route_label("/wp-admin/../../etc/passwd") == "other"
    assert route_label("/v1/chat/completions/x") == "other"


def test_gpu_collector_is_silent_without_cuda():
    m = ServeMetrics()
    names = {name for name, _ in samples(m)}
    assert not any(n.startswith("gptoss_gpu_memory") for n in names)
