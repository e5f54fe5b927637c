"""GPU figures in /metrics through a fake NVML module on CPU: values, absence, failures, hangs, the sampler thread."""

from __future__ import annotations

import threading
import time
import tomllib
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Optional

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from gptoss_cli.serve.generation.gpu_metrics import GpuMetrics, gpu_metrics_for, nvml_devices
from gptoss_cli.serve.generation.metrics import ServeMetrics

pytestmark = pytest.mark.timeout(60)

GIB = 1024 ** 3
UUIDS = ("GPU-11111111-aaaa-bbbb-cccc-000000000000", "GPU-22222222-aaaa-bbbb-cccc-000000000000")


class NVMLError(Exception):
    pass


class FakeNvml:
    """The part of pynvml that gpu_metrics uses; records (call, thread) and can fail or hang on request."""

    nvmlMemory_v2 = 0x02000028

    def __init__(self, count: int = 2, *, fail_init: bool = False, v2: bool = True) -> None:
        self.count, self.fail_init = count, fail_init
        self.calls: list[tuple[str, int]] = []
        self.fail: set[tuple[str, int]] = set()  # (call, device index)
        self.hang: Optional[threading.Event] = None  # when set: memory reads wait on it
        self.entered_hang = threading.Event()
        self.shutdowns = 0
        if not v2:
            self.nvmlMemory_v2 = None  # type: ignore[assignment]

    def _call(self, name: str, index: int = -1) -> None:
        self.calls.append((name, threading.get_ident()))
        if (name, index) in self.fail:
            raise NVMLError(f"{name} failed on {index}")

    def nvmlInit(self) -> None:
        self._call("init")
        if self.fail_init:
            raise NVMLError("NVML Shared Library Not Found")

    def nvmlShutdown(self) -> None:
        self._call("shutdown")
        self.shutdowns += 1

    def nvmlDeviceGetCount(self) -> int:
        self._call("count")
        return self.count

    def nvmlDeviceGetHandleByIndex(self, index: int) -> Any:
        self._call("handle", index)
        return SimpleNamespace(index=index)

    def nvmlDeviceGetUUID(self, handle: Any) -> str:
        self._call("uuid", handle.index)
        return UUIDS[handle.index]

    def nvmlDeviceGetName(self, handle: Any) -> bytes:
        self._call("name", handle.index)
        return b"NVIDIA H200"

    def nvmlDeviceGetMemoryInfo(self, handle: Any, version: Any = None) -> Any:
        self._call("memory", handle.index)
        if self.hang is not None:
            self.entered_hang.set()
            self.hang.wait(30)
        used = (handle.index + 1) * GIB + (0 if version else 512)  # v1 counts driver-reserved memory too
        return SimpleNamespace(used=used, total=141 * GIB, free=141 * GIB - used)

    def nvmlDeviceGetUtilizationRates(self, handle: Any) -> Any:
        self._call("utilization", handle.index)
        return SimpleNamespace(gpu=37 + handle.index, memory=5)


def scrape(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def gpu_names(registry: CollectorRegistry) -> set[str]:
    text = generate_latest(registry).decode()
    return {ln.split("{")[0].split(" ")[0] for ln in text.splitlines() if ln and not ln.startswith("#")
            and (ln.startswith("gptoss_gpu_") or ln.startswith("vllm:"))}


def test_values_are_exported_under_gptoss_and_vllm_names() -> None:
    registry, nvml = CollectorRegistry(), FakeNvml()
    metrics = gpu_metrics_for(registry, device="cuda", nvml=nvml, kv_cache_usage=lambda: 0.25,
                              model_name="gpt-oss-20b", interval=0.05)
    assert metrics is not None
    try:
        assert metrics.wait_sampled()
        got = scrape(registry)
    finally:
        metrics.close()
    for i in (0, 1):
        dev = (("device", str(i)),)
        assert got[("gptoss_gpu_memory_used_bytes", dev)] == (i + 1) * GIB  # the v2 figure, as nvidia-smi shows
        assert got[("gptoss_gpu_memory_total_bytes", dev)] == 141 * GIB
        assert got[("gptoss_gpu_utilization_ratio", dev)] == pytest.approx((37 + i) / 100)
        assert got[("gptoss_gpu_info", (("device", str(i)), ("name", "NVIDIA H200"), ("uuid", UUIDS[i])))] == 1
    engine = (("engine", "0"), ("model_name", "gpt-oss-20b"))
    assert got[("gptoss_gpu_cache_usage_perc", ())] == 0.25
    assert got[("vllm:kv_cache_usage_perc", engine)] == 0.25
    assert got[("vllm:gpu_cache_usage_perc", engine)] == 0.25
    assert nvml.shutdowns == 1 and gpu_names(registry) == set()  # close() took it all away again


def test_nvml_v1_memory_when_v2_is_missing() -> None:
    registry, nvml = CollectorRegistry(), FakeNvml(1, v2=False)
    with gpu_metrics_for(registry, device="cuda:0", nvml=nvml, interval=0.05) as metrics:
        assert metrics.wait_sampled()
        assert scrape(registry)[("gptoss_gpu_memory_used_bytes", (("device", "0"),))] == GIB + 512
        assert "gptoss_gpu_cache_usage_perc" not in gpu_names(registry)  # no KV callable: absent, not 0


@pytest.mark.parametrize("device", ["cpu", "mps", "auto"])
def test_absent_on_cpu_and_nvml_untouched(device: str) -> None:
    registry, nvml = CollectorRegistry(), FakeNvml()
    assert gpu_metrics_for(registry, device=device, nvml=nvml, kv_cache_usage=lambda: 0.5) is None
    assert nvml.calls == [] and gpu_names(registry) == set()


def test_absent_without_nvidia_ml_py(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml -> ImportError
    registry = CollectorRegistry()
    assert gpu_metrics_for(registry, device="cuda", kv_cache_usage=lambda: 0.5) is None
    assert gpu_names(registry) == set()


def test_absent_when_nvml_cannot_start_or_sees_no_gpu() -> None:
    registry = CollectorRegistry()
    assert gpu_metrics_for(registry, device="cuda", nvml=FakeNvml(fail_init=True)) is None
    none = FakeNvml(0)
    assert gpu_metrics_for(registry, device="cuda", nvml=none) is None
    assert none.shutdowns == 1 and gpu_names(registry) == set()


def test_a_failing_call_leaves_only_that_figure_out(caplog: pytest.LogCaptureFixture) -> None:
    registry, nvml = CollectorRegistry(), FakeNvml()
    nvml.fail = {("utilization", 1), ("memory", 0)}

    def kv() -> float:
        raise RuntimeError("engine is busy")

    with gpu_metrics_for(registry, device="cuda", nvml=nvml, kv_cache_usage=kv, interval=0.02) as metrics:
        assert metrics.wait_sampled(3)  # the thread goes on sampling after the failures
        got = scrape(registry)
    assert ("gptoss_gpu_utilization_ratio", (("device", "0"),)) in got
    assert ("gptoss_gpu_utilization_ratio", (("device", "1"),)) not in got
    assert ("gptoss_gpu_memory_used_bytes", (("device", "0"),)) not in got
    assert got[("gptoss_gpu_memory_used_bytes", (("device", "1"),))] == 2 * GIB
    assert not any(name.endswith("cache_usage_perc") for name, _ in got)
    warnings = [r.getMessage() for r in caplog.records if "gpu metrics" in r.getMessage()]
    assert len(warnings) == 3  # one line per failing figure, not one per sample


def test_a_hung_nvml_call_does_not_block_scrapes_or_close() -> None:
    registry, nvml = CollectorRegistry(), FakeNvml(1)
    metrics = gpu_metrics_for(registry, device="cuda", nvml=nvml, interval=0.02, start=False)
    assert metrics is not None
    metrics.stale_after, metrics.join_timeout = 0.3, 0.2
    metrics.start()
    assert metrics.wait_sampled()
    nvml.hang = threading.Event()
    try:
        assert nvml.entered_hang.wait(5)
        started = time.perf_counter()
        assert "gptoss_gpu_memory_used_bytes" in gpu_names(registry)  # the last good sample, at once
        assert time.perf_counter() - started < 0.5
        deadline = time.monotonic() + 5
        while gpu_names(registry) and time.monotonic() < deadline:  # stale: left out, never shown as current
            time.sleep(0.05)
        assert gpu_names(registry) == set()
        started = time.perf_counter()
        metrics.close()
        assert time.perf_counter() - started < 1.0
        assert nvml.shutdowns == 0  # not under a call that is still running
    finally:
        nvml.hang.set()


def test_sampling_runs_on_its_own_thread_and_scrapes_call_nothing() -> None:
    registry, nvml = CollectorRegistry(), FakeNvml()
    kv_threads: list[int] = []

    def kv() -> float:
        kv_threads.append(threading.get_ident())
        return 0.5

    with gpu_metrics_for(registry, device="cuda", nvml=nvml, kv_cache_usage=kv, interval=0.02) as metrics:
        assert metrics.wait_sampled(2)
        me = threading.get_ident()
        sampled = [t for name, t in nvml.calls if name in ("memory", "utilization")]
        assert sampled and me not in sampled and kv_threads and me not in kv_threads
        assert {t for name, t in nvml.calls if name == "init"} == {me}  # set-up only, at start-up
        metrics.interval = 3600.0  # no more samples: any call from now on would come from the scrape
        assert metrics.wait_sampled(metrics._samples + 1, timeout=5)
        before = len(nvml.calls)
        for _ in range(5):
            generate_latest(registry)
        assert len(nvml.calls) == before


def test_cuda_order_follows_uuids_and_falls_back_to_nvml_order() -> None:
    nvml = FakeNvml()
    swapped = nvml_devices(nvml, [UUIDS[1].removeprefix("GPU-"), UUIDS[0].removeprefix("GPU-")])
    assert [(d.label, d.handle.index) for d in swapped] == [("0", 1), ("1", 0)]
    unknown = nvml_devices(nvml, ["33333333-0000-0000-0000-000000000000"])
    assert [(d.label, d.handle.index) for d in unknown] == [("0", 0), ("1", 1)]


def test_lives_next_to_the_serve_registry_and_refuses_a_second_copy() -> None:
    serve = ServeMetrics()
    nvml = FakeNvml(1)
    with gpu_metrics_for(serve.registry, device="cuda", nvml=nvml, kv_cache_usage=lambda: 0.1,
                         interval=0.05) as metrics:
        assert metrics.wait_sampled()
        body, _ = serve.render()
        assert b"gptoss_requests_in_flight" in body and b"vllm:kv_cache_usage_perc" in body
        with pytest.raises(ValueError, match="Duplicated"):
            GpuMetrics(serve.registry, nvml, metrics.devices)


def test_nvidia_ml_py_is_in_the_serve_extra() -> None:
    project = tomllib.loads((Path(__file__).resolve().parent.parent / "pyproject.toml").read_text())["project"]
    assert any(r.replace(" ", "").startswith("nvidia-ml-py") for r in project["optional-dependencies"]["serve"])


def test_real_nvml_is_absent_here_or_agrees_with_nvidia_smi() -> None:
    """With the real nvidia-ml-py: no driver (CI) -> nothing registered; on a GPU box -> the figures nvidia-smi shows."""
    import shutil
    import subprocess

    pytest.importorskip("pynvml", reason="nvidia-ml-py is not installed")
    registry = CollectorRegistry()
    metrics = gpu_metrics_for(registry, device="cuda", interval=0.1)
    if metrics is None:
        assert gpu_names(registry) == set()
        return
    try:
        assert metrics.wait_sampled()
        got = scrape(registry)
    finally:
        metrics.close()
    if shutil.which("nvidia-smi") is None:
        pytest.skip("NVML works but nvidia-smi is not installed: nothing to compare against")
    out = subprocess.run(["nvidia-smi", "--query-gpu=uuid,memory.used,memory.total",
                          "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=30, check=True)
    label = {labels["uuid"]: labels["device"] for (name, pairs) in got if name == "gptoss_gpu_info"
             for labels in [dict(pairs)]}
    mib = 1024 ** 2
    for row in out.stdout.strip().splitlines():
        uuid, used, total = (c.strip() for c in row.split(","))
        dev = (("device", label[uuid]),)
        assert abs(got[("gptoss_gpu_memory_total_bytes", dev)] / mib - float(total)) <= 1
        assert abs(got[("gptoss_gpu_memory_used_bytes", dev)] / mib - float(used)) <= 256  # others may allocate
        assert 0.0 <= got[("gptoss_gpu_utilization_ratio", dev)] <= 1.0


def test_the_server_exports_gpu_figures_for_an_engine_on_cuda_and_none_on_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """Wired into the app: after the engine loads on CUDA, /metrics has the NVML figures and the engine's KV usage;
    an engine on the CPU gets none (absent, not zero)."""
    from fastapi.testclient import TestClient

    from gptoss_cli.serve.engines.scripted import ScriptedEngine
    from gptoss_cli.serve.generation import gpu_metrics as gm
    from gptoss_cli.serve.openai.app import create_app
    from gptoss_cli.serve.settings import ServeSettings

    monkeypatch.setattr(gm, "_import_nvml", lambda: FakeNvml(1))
    monkeypatch.setattr(gm, "torch_cuda_uuids", lambda: None)
    for device, present in (("cuda:0", True), ("cpu", False)):
        engine = ScriptedEngine(["<|channel|>final<|message|>Hi<|return|>"])
        engine.device = device  # type: ignore[attr-defined]
        engine.kv_cache_usage = lambda: 0.25  # type: ignore[attr-defined]
        app = create_app(ServeSettings(), engine, emit_access_log=lambda line: None)
        with TestClient(app) as client:
            for _ in range(200):
                if client.get("/ready").status_code == 200:
                    break
                time.sleep(0.01)
            sampler = app.state.server.status.gpu_metrics
            assert (sampler is not None) is present
            if present:
                assert sampler.wait_sampled(1, timeout=5)
            text = client.get("/metrics").text
        assert ("gptoss_gpu_memory_used_bytes" in text) is present
        assert ("gptoss_gpu_cache_usage_perc 0.25" in text) is present
