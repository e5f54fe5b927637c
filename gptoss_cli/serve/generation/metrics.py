"""Prometheus metrics for ``gptoss serve``: one ``CollectorRegistry`` per app, every name prefixed ``gptoss_``.

``ServeMetrics`` owns the registry and the instruments; the scheduler, the pipeline and the access-log middleware
call its small methods. ``render()`` returns the text exposition for ``GET /metrics``. prometheus_client is imported
here at module level: import this module lazily (only ``serve`` needs it).

The list of metrics (also in the README):

- ``gptoss_requests_total{route,status}``                 requests answered, by route and HTTP status
- ``gptoss_requests_in_flight``                           requests generating now (holding a slot)
- ``gptoss_queue_depth``                                  requests waiting for a slot
- ``gptoss_rejections_total{reason}``                     refused: overloaded (429), draining (503)
- ``gptoss_request_timeouts_total``                       requests cancelled by --request-timeout (504)
- ``gptoss_requests_cancelled_total``                     generations stopped because the client went away
- ``gptoss_time_to_first_token_seconds{route}``           histogram: arrival → first generated token
- ``gptoss_request_duration_seconds{route}``              histogram: arrival → last byte sent
- ``gptoss_prompt_tokens_total`` / ``gptoss_completion_tokens_total``   token counters
- ``gptoss_cache_hits_total`` / ``gptoss_cache_misses_total``           response cache
- ``gptoss_batch_size``                                   histogram: rows per batched decode step
- ``gptoss_kv_waits_total`` / ``gptoss_preemptions_total``  requests the batch held back for KV / preempted
- ``gptoss_model_load_seconds``                           time the model took to load
- ``gptoss_max_concurrency`` / ``gptoss_max_queue``        configured limits
- ``gptoss_gpu_memory_allocated_bytes{device}`` / ``gptoss_gpu_memory_reserved_bytes{device}``  on CUDA only
- ``gptoss_info{version,model,engine}``                    constant 1, labels describe the server
- ``gptoss_policy_decisions_total{rule,action,key}``      requests a --policy rule acted on (once per request and rule)
- ``gptoss_policy_reloads_total{result}``                 policy reloads on SIGHUP: ok, error (the old policy stays)
"""

from __future__ import annotations

import sys
from typing import Any, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from gptoss_cli.serve.generation.record import note_engine_event

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 128)
KNOWN_ROUTES = ("/v1/chat/completions", "/v1/completions", "/v1/models", "/health", "/ready", "/metrics",
                "/openapi.json", "/docs")


def route_label(path: str) -> str:
    """Bound the label's cardinality: known routes by name, ``/v1/models/<id>`` collapsed, the rest ``other``."""
    if path in KNOWN_ROUTES:
        return path
    if path.startswith("/v1/models/"):
        return "/v1/models/{model}"
    return "other"


class _GpuMemoryCollector:
    """Reads torch.cuda memory counters at scrape time, only when torch is already imported and CUDA is in use."""

    def collect(self) -> Iterable[Any]:
        torch = sys.modules.get("torch")
        if torch is None:
            return []
        try:
            if not torch.cuda.is_available() or not torch.cuda.is_initialized():
                return []
            allocated = GaugeMetricFamily("gptoss_gpu_memory_allocated_bytes", "GPU memory held by tensors",
                                          labels=["device"])
            reserved = GaugeMetricFamily("gptoss_gpu_memory_reserved_bytes",
                                         "GPU memory reserved by the caching allocator", labels=["device"])
            for i in range(torch.cuda.device_count()):
                allocated.add_metric([str(i)], float(torch.cuda.memory_allocated(i)))
                reserved.add_metric([str(i)], float(torch.cuda.memory_reserved(i)))
            return [allocated, reserved]
        except Exception:  # noqa: BLE001 - a scrape must never fail because of the GPU probe
            return []


class ServeMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        disable_created_metrics()  # no *_created series: they double the exposition and nobody graphs them
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("gptoss_requests", "Requests answered, by route and HTTP status",
                                ["route", "status"], registry=r)
        self.in_flight = Gauge("gptoss_requests_in_flight", "Requests generating now (holding a slot)", registry=r)
        self.queue_depth = Gauge("gptoss_queue_depth", "Requests waiting for a generation slot", registry=r)
        self.rejections = Counter("gptoss_rejections", "Requests refused before any work (overloaded, draining)",
                                  ["reason"], registry=r)
        self.timeouts = Counter("gptoss_request_timeouts", "Requests cancelled by the request timeout", registry=r)
        self.cancelled = Counter("gptoss_requests_cancelled", "Generations stopped because the client went away",
                                 registry=r)
        self.ttft = Histogram("gptoss_time_to_first_token_seconds", "Arrival to first generated token",
                              ["route"], buckets=LATENCY_BUCKETS, registry=r)
        self.latency = Histogram("gptoss_request_duration_seconds", "Arrival to last byte of the response",
                                 ["route"], buckets=LATENCY_BUCKETS, registry=r)
        self.prompt_tokens = Counter("gptoss_prompt_tokens", "Prompt tokens processed by the engine", registry=r)
        self.completion_tokens = Counter("gptoss_completion_tokens", "Completion tokens generated by the engine "
                                         "(cache replays not counted)", registry=r)
        self.cache_hits = Counter("gptoss_cache_hits", "Response cache hits", registry=r)
        self.cache_misses = Counter("gptoss_cache_misses", "Response cache misses (cacheable requests only)",
                                    registry=r)
        self.batch_size = Histogram("gptoss_batch_size", "Rows in each batched decode step", buckets=BATCH_BUCKETS,
                                    registry=r)
        self.kv_waits = Counter("gptoss_kv_waits", "Requests that waited for KV memory before joining the batch",
                                registry=r)
        self.preemptions = Counter("gptoss_preemptions", "Times a request's KV was dropped to make room for the "
                                   "batch (it resumed, recomputed)", registry=r)
        self.model_load = Gauge("gptoss_model_load_seconds", "Seconds the model took to load", registry=r)
        self.max_concurrency = Gauge("gptoss_max_concurrency", "Configured --max-concurrency", registry=r)
        self.max_queue = Gauge("gptoss_max_queue", "Configured --max-queue", registry=r)
        self.info = Gauge("gptoss_info", "Server description (value is always 1)", ["version", "model", "engine"],
                          registry=r)
        self.policy_decisions = Counter("gptoss_policy_decisions", "Requests a policy rule acted on, by rule id, "
                                        "action and API key name", ["rule", "action", "key"], registry=r)
        self.policy_reloads = Counter("gptoss_policy_reloads", "Policy reloads (SIGHUP), by result", ["result"],
                                      registry=r)
        self._upstream: tuple[Histogram, Histogram] | None = None
        r.register(_GpuMemoryCollector())
        for reason in ("overloaded", "draining"):
            self.rejections.labels(reason=reason)

    # -- wiring ---------------------------------------------------------------------------------------------------
    def watch_scheduler(self, scheduler: Any) -> None:
        """Live gauges read from the scheduler at scrape time."""
        self.in_flight.set_function(lambda: scheduler.in_flight)
        self.queue_depth.set_function(lambda: scheduler.queued)
        self.max_concurrency.set(scheduler.max_concurrency)
        self.max_queue.set(scheduler.max_queue)

    def scheduler_event(self, name: str) -> None:
        """``Scheduler(on_event=metrics.scheduler_event)``."""
        if name == "rejected_overloaded":
            self.rejections.labels(reason="overloaded").inc()
        elif name == "rejected_draining":
            self.rejections.labels(reason="draining").inc()
        elif name == "timed_out":
            self.timeouts.inc()
        elif name == "cancelled":
            self.cancelled.inc()

    def track_upstream(self) -> None:
        """Add the histograms of a request-level engine (vLLM, an upstream); idempotent."""
        if self._upstream is not None:
            return
        self._upstream = (
            Histogram("gptoss_upstream_duration_seconds", "Time the backend behind the front took, by outcome",
                      ["kind", "stream", "status"], buckets=LATENCY_BUCKETS, registry=self.registry),
            Histogram("gptoss_upstream_first_byte_seconds", "Request sent to the backend's first byte",
                      ["kind", "stream"], buckets=LATENCY_BUCKETS, registry=self.registry),
        )

    def upstream_exchange(self, o: Any) -> None:
        """``EngineHooks.observe``: one exchange with the server behind the front (an upstream ``Observation``).
        Tokens are counted by the pipeline, not here."""
        self.track_upstream()
        assert self._upstream is not None
        duration, first = self._upstream
        stream = "true" if o.stream else "false"
        duration.labels(kind=o.kind, stream=stream, status=str(o.status)).observe(o.total_s)
        if o.first_byte_s is not None:
            first.labels(kind=o.kind, stream=stream).observe(o.first_byte_s)

    def describe(self, version: str, model: str, engine: str) -> None:
        self.info.labels(version=version, model=model, engine=engine).set(1)

    def batch_step(self, rows: int, seconds: float) -> None:
        """``BatchingEngine(on_step=metrics.batch_step)``; called from the engine thread (instruments are locked)."""
        if rows:
            self.batch_size.observe(rows)

    def engine_event(self, name: str) -> None:
        """``EngineHooks.on_event``, called in the request's task: the counter and that request's record."""
        if name == "kv_wait":
            self.kv_waits.inc()
        elif name == "preempted":
            self.preemptions.inc()
        note_engine_event(name)

    # -- per request ----------------------------------------------------------------------------------------------
    def request_done(self, path: str, status: int, seconds: float) -> None:
        route = route_label(path)
        self.requests.labels(route=route, status=str(status)).inc()
        if route.startswith("/v1/") and route != "/v1/models":
            self.latency.labels(route=route).observe(seconds)

    def first_token(self, path: str, seconds: float) -> None:
        self.ttft.labels(route=route_label(path)).observe(seconds)

    def tokens(self, prompt: int, completion: int) -> None:
        if prompt:
            self.prompt_tokens.inc(prompt)
        if completion:
            self.completion_tokens.inc(completion)

    def cache_lookup(self, hit: bool) -> None:
        (self.cache_hits if hit else self.cache_misses).inc()

    def policy_decision(self, rule: str, action: str, key: str) -> None:
        self.policy_decisions.labels(rule=rule, action=action, key=key).inc()

    def policy_reload(self, ok: bool) -> None:
        self.policy_reloads.labels(result="ok" if ok else "error").inc()

    def render(self) -> tuple[bytes, str]:
        """The text exposition and its content type, for ``GET /metrics``."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


__all__ = ["LATENCY_BUCKETS", "ServeMetrics", "route_label"]
