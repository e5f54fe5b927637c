"""GPU figures for ``GET /metrics`` read through NVML, sampled by a daemon thread and never on the request path.

What is exported, only while the engine runs on CUDA and NVML works (on CPU, without ``nvidia-ml-py`` or without a
CUDA device, nothing is registered, so the names are absent rather than zero):

- ``gptoss_gpu_memory_used_bytes{device}`` / ``gptoss_gpu_memory_total_bytes{device}``   NVML memory, all processes
- ``gptoss_gpu_utilization_ratio{device}``     share of the last sample period a kernel ran (NVML ``gpu``, 0..1)
- ``gptoss_gpu_info{device,uuid,name}``        constant 1: which physical GPU a ``device`` label is
- ``gptoss_gpu_cache_usage_perc``              the engine's own KV-cache usage, a fraction 0..1 (1 = full)
- ``vllm:kv_cache_usage_perc{model_name,engine}`` and ``vllm:gpu_cache_usage_perc{model_name,engine}``  the same
  figure under vLLM's names (the second is vLLM's older, deprecated one), so vLLM dashboards work unchanged

``device`` is the CUDA index, as in ``gptoss_gpu_memory_allocated_bytes{device}``: NVML handles are matched to the
CUDA devices by UUID (``torch.cuda.get_device_properties(i).uuid``), else NVML's own order is used.

How it stays off the request path: ``start()`` runs a daemon thread that reads NVML (and the KV-cache callable)
every ``interval`` seconds into an immutable snapshot; a scrape only reads that snapshot. A failing NVML call drops
that one figure from the snapshot (it never raises into the thread or the scrape); a hung call leaves the scrape
unaffected, and a snapshot older than ``stale_after`` seconds is not exported at all. ``close()`` stops the thread
without waiting more than ``join_timeout`` for a hung call, unregisters the collector and shuts NVML down.

prometheus_client is imported at module level: import this module lazily, like ``serve/metrics.py``.
"""

from __future__ import annotations

import logging
import math
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Optional, Sequence

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily

log = logging.getLogger(__name__)

DEFAULT_INTERVAL = 5.0
KvUsageFn = Callable[[], Optional[float]]
"""The engine's KV-cache usage as a fraction 0..1 (None: unknown). Called on the sampler thread: keep it cheap."""


@dataclass(frozen=True)
class Device:
    """One GPU to sample: the ``device`` label (CUDA index), the NVML handle, its UUID and name."""

    label: str
    handle: Any
    uuid: str = ""
    name: str = ""


@dataclass(frozen=True)
class DeviceSample:
    device: Device
    used: Optional[float] = None
    total: Optional[float] = None
    utilization: Optional[float] = None


@dataclass(frozen=True)
class Snapshot:
    at: float  # clock() when taken
    devices: tuple[DeviceSample, ...] = ()
    kv_cache_usage: Optional[float] = None


class GpuMetrics:
    """Registers GPU gauges on ``registry`` at once; values appear after ``start()`` has taken the first sample."""

    def __init__(self, registry: CollectorRegistry, nvml: Any, devices: Sequence[Device], *,
                 kv_cache_usage: Optional[KvUsageFn] = None, model_name: str = "",
                 interval: float = DEFAULT_INTERVAL, stale_after: Optional[float] = None,
                 join_timeout: float = 2.0, owns_nvml: bool = True,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if interval <= 0:
            raise ValueError("interval must be > 0")
        self.nvml, self.devices, self.kv_cache_usage = nvml, tuple(devices), kv_cache_usage
        self.model_name, self.interval, self.join_timeout = model_name, interval, join_timeout
        self.stale_after = stale_after if stale_after is not None else max(3 * interval, interval + 10.0)
        self._owns_nvml, self._clock = owns_nvml, clock
        self._snapshot: Optional[Snapshot] = None
        self._samples = 0
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._warned: set[str] = set()
        self._registry = registry
        self._collector = _Collector(self)
        registry.register(self._collector)

    # -- lifecycle

    def start(self) -> "GpuMetrics":
        if self._thread is None and not self._stop.is_set():
            self._thread = threading.Thread(target=self._run, name="gptoss-gpu-metrics", daemon=True)
            self._thread.start()
        return self

    def close(self) -> None:
        """Stop sampling (waiting at most ``join_timeout``), drop the gauges, shut NVML down if the thread ended."""
        self._stop.set()
        thread, self._thread = self._thread, None
        stopped = True
        if thread is not None:
            thread.join(self.join_timeout)
            stopped = not thread.is_alive()
        try:
            self._registry.unregister(self._collector)
        except KeyError:
            pass
        with self._changed:
            self._snapshot = None
        if stopped and self._owns_nvml:  # never shut NVML down under a call that is still running
            _quietly(self.nvml.nvmlShutdown)

    def __enter__(self) -> "GpuMetrics":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def wait_sampled(self, count: int = 1, timeout: float = 5.0) -> bool:
        """Block until ``count`` samples have been taken since construction (for start-up checks and tests)."""
        with self._changed:
            return self._changed.wait_for(lambda: self._samples >= count, timeout)

    # -- sampling (on the thread)

    def _run(self) -> None:
        while not self._stop.is_set():
            snapshot = self.sample()
            with self._changed:
                if not self._stop.is_set():
                    self._snapshot = snapshot
                self._samples += 1
                self._changed.notify_all()
            self._stop.wait(self.interval)

    def sample(self) -> Snapshot:
        """One pass over the devices and the KV-cache callable; every failure only leaves that figure out."""
        devices = tuple(self._sample_device(d) for d in self.devices)
        kv = self._read("kv_cache_usage", self.kv_cache_usage) if self.kv_cache_usage is not None else None
        if kv is not None:
            kv = min(1.0, max(0.0, kv)) if math.isfinite(kv) else None
        return Snapshot(self._clock(), devices, kv)

    def _sample_device(self, device: Device) -> DeviceSample:
        memory = self._read(f"memory[{device.label}]", lambda: _memory_info(self.nvml, device.handle))
        util = self._read(f"utilization[{device.label}]",
                          lambda: self.nvml.nvmlDeviceGetUtilizationRates(device.handle).gpu / 100.0)
        used, total = memory if memory is not None else (None, None)
        return DeviceSample(device, used, total, util)

    def _read(self, what: str, fn: Callable[[], Any]) -> Any:
        try:
            value = fn()
            if isinstance(value, tuple):
                return tuple(float(v) for v in value)
            return None if value is None else float(value)
        except Exception as exc:  # noqa: BLE001 - an NVML error, a lost GPU, an engine bug: leave the figure out
            if what not in self._warned:
                self._warned.add(what)
                log.warning("gpu metrics: reading %s failed (%s: %s); it is left out of /metrics", what,
                            type(exc).__name__, exc)
            return None

    # -- scraping (any thread; reads only the snapshot)

    def snapshot(self) -> Optional[Snapshot]:
        """The last sample, or None before the first one, after close(), or when it is older than stale_after."""
        snap = self._snapshot
        if snap is None or self._clock() - snap.at > self.stale_after:
            return None
        return snap


def _memory_info(nvml: Any, handle: Any) -> tuple[float, float]:
    """(used, total) bytes; NVML's v2 call (used without driver-reserved memory, as nvidia-smi shows) if present."""
    v2 = getattr(nvml, "nvmlMemory_v2", None)
    if v2 is not None:
        try:
            info = nvml.nvmlDeviceGetMemoryInfo(handle, version=v2)
            return float(info.used), float(info.total)
        except Exception:  # noqa: BLE001 - an older driver without the v2 call: fall back to v1
            pass
    info = nvml.nvmlDeviceGetMemoryInfo(handle)
    return float(info.used), float(info.total)


def _quietly(fn: Callable[[], Any]) -> None:
    try:
        fn()
    except Exception:  # noqa: BLE001 - shutting down: nothing useful to do with an NVML error here
        pass


class _Collector:
    """Turns the last snapshot into metric families; families without a value are left out entirely."""

    def __init__(self, owner: GpuMetrics) -> None:
        self.owner = owner

    def describe(self) -> Iterable[Any]:  # names only, so the registry can refuse duplicates at register time
        return list(self._families(Snapshot(0.0), keep_empty=True))

    def collect(self) -> Iterable[Any]:
        snap = self.owner.snapshot()
        return [] if snap is None else list(self._families(snap))

    def _families(self, snap: Snapshot, keep_empty: bool = False) -> Iterable[Any]:
        dev = ["device"]
        used = GaugeMetricFamily("gptoss_gpu_memory_used_bytes", "GPU memory in use (all processes, NVML)", labels=dev)
        total = GaugeMetricFamily("gptoss_gpu_memory_total_bytes", "GPU memory in total (NVML)", labels=dev)
        util = GaugeMetricFamily("gptoss_gpu_utilization_ratio", "share of time a kernel ran on the GPU (NVML), 0..1",
                                 labels=dev)
        info = GaugeMetricFamily("gptoss_gpu_info", "always 1; which GPU a device label is",
                                 labels=[*dev, "uuid", "name"])
        for s in snap.devices:
            label = [s.device.label]
            if s.used is not None:
                used.add_metric(label, s.used)
            if s.total is not None:
                total.add_metric(label, s.total)
            if s.utilization is not None:
                util.add_metric(label, s.utilization)
            info.add_metric([*label, s.device.uuid, s.device.name], 1.0)
        kv_help = "KV-cache usage. 1 means 100 percent usage."
        ours = GaugeMetricFamily("gptoss_gpu_cache_usage_perc", f"the engine's {kv_help}")
        engine = ["model_name", "engine"]
        kv = GaugeMetricFamily("vllm:kv_cache_usage_perc", kv_help, labels=engine)
        old = GaugeMetricFamily("vllm:gpu_cache_usage_perc", f"GPU {kv_help} (vLLM's older name)", labels=engine)
        if snap.kv_cache_usage is not None:
            ours.add_metric([], snap.kv_cache_usage)
            kv.add_metric([self.owner.model_name, "0"], snap.kv_cache_usage)
            old.add_metric([self.owner.model_name, "0"], snap.kv_cache_usage)
        for family in (used, total, util, info, ours, kv, old):
            if keep_empty or family.samples:
                yield family


# -- the factory


def torch_cuda_uuids() -> Optional[list[str]]:
    """The UUIDs of the CUDA devices this process sees, in CUDA order; None unless torch already uses CUDA."""
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    try:
        if not torch.cuda.is_available() or not torch.cuda.is_initialized():
            return None
        return [str(torch.cuda.get_device_properties(i).uuid) for i in range(torch.cuda.device_count())]
    except Exception:  # noqa: BLE001 - an odd build or a lost device: fall back to NVML's order
        return None


def _bare(uuid: str) -> str:
    return uuid.lower().removeprefix("gpu-").removeprefix("mig-")


def nvml_devices(nvml: Any, cuda_uuids: Optional[Sequence[str]] = None) -> list[Device]:
    """NVML's devices labelled by CUDA index (matched by UUID), or by NVML index when they cannot all be matched."""
    found = []
    for index in range(int(nvml.nvmlDeviceGetCount())):
        handle = nvml.nvmlDeviceGetHandleByIndex(index)
        uuid, name = _text(nvml, "nvmlDeviceGetUUID", handle), _text(nvml, "nvmlDeviceGetName", handle)
        found.append(Device(str(index), handle, uuid, name))
    if cuda_uuids:
        by_uuid = {_bare(d.uuid): d for d in found if d.uuid}
        matched = [by_uuid.get(_bare(u)) for u in cuda_uuids]
        if all(matched):
            return [Device(str(i), d.handle, d.uuid, d.name) for i, d in enumerate(matched) if d is not None]
    return found


def _text(nvml: Any, call: str, handle: Any) -> str:
    try:
        value = getattr(nvml, call)(handle)
    except Exception:  # noqa: BLE001 - only a label: go on without it
        return ""
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _import_nvml() -> Any:
    try:
        import pynvml  # nvidia-ml-py (serve extra)
    except ImportError:
        return None
    return pynvml


def gpu_metrics_for(registry: CollectorRegistry, *, device: str, kv_cache_usage: Optional[KvUsageFn] = None,
                    model_name: str = "", interval: float = DEFAULT_INTERVAL, nvml: Any = None,
                    cuda_uuids: Optional[Sequence[str]] = None, start: bool = True) -> Optional[GpuMetrics]:
    """GPU metrics for an engine on ``device`` ("cpu", "cuda", "cuda:1"), started; None and nothing registered on
    CPU, without nvidia-ml-py, when NVML cannot start (no driver) or sees no GPU.

    ``nvml`` defaults to ``pynvml``; ``cuda_uuids`` (CUDA order) to :func:`torch_cuda_uuids`. NVML is initialised
    here, on the caller's thread (start-up, not a request); every later NVML call runs on the sampler thread.
    """
    if not str(device).lower().startswith("cuda"):
        return None
    nvml = nvml if nvml is not None else _import_nvml()
    if nvml is None:
        return None
    try:
        nvml.nvmlInit()
    except Exception as exc:  # noqa: BLE001 - NVMLError_LibraryNotFound / DriverNotLoaded / ...
        log.info("gpu metrics: NVML is not usable (%s); GPU figures are left out of /metrics", exc)
        return None
    try:
        devices = nvml_devices(nvml, cuda_uuids if cuda_uuids is not None else torch_cuda_uuids())
    except Exception as exc:  # noqa: BLE001
        log.info("gpu metrics: NVML lists no devices (%s); GPU figures are left out of /metrics", exc)
        devices = []
    if not devices:
        _quietly(nvml.nvmlShutdown)
        return None
    metrics = GpuMetrics(registry, nvml, devices, kv_cache_usage=kv_cache_usage, model_name=model_name,
                         interval=interval)
    return metrics.start() if start else metrics


__all__ = ["DEFAULT_INTERVAL", "Device", "DeviceSample", "GpuMetrics", "KvUsageFn", "Snapshot", "gpu_metrics_for",
           "nvml_devices", "torch_cuda_uuids"]
