"""How a model folder will be loaded, decided before loading: the MXFP4 path, the dtype, the context, the memory.

An MXFP4 checkpoint (gpt-oss) takes one of three paths:

    native       transformers' triton kernels (``kernels-community/gpt-oss-triton-kernels``); chosen only when
                 every condition transformers itself checks holds (``native_status``), the kernel included
    packed       gptoss' pure-torch experts (``mxfp4.py``): 4-bit experts as stored, dequantised per step
    dequantise   transformers dequantises every expert at load (~39 GiB of weights in bf16 for gpt-oss-20b)

``--mxfp4 auto`` (the default) takes native when proven, else dequantise when the dequantised model fits, else
packed. With no ``--max-model-len`` the context is the largest (a multiple of 1024, at most the model's own) that
fits the path on the device; an explicit value that does not fit is refused (exit 3) with the numbers.
"""

from __future__ import annotations

import importlib.metadata as md
import importlib.util
from dataclasses import dataclass
from pathlib import Path

from gptoss_cli.errors import CouldNotRun, UsageError
from gptoss_cli.kernels import KERNEL_REPO, KERNEL_VERSION, fetched_kernel
from gptoss_cli.serve.engines.transformers.memory import (
    MemoryEstimate,
    check_memory,
    estimate_memory,
    gib,
    read_config,
)
from gptoss_cli.serve.options import DTYPES, MXFP4_MODES

MIN_CONTEXT = 1024
_PROBE_CONTEXT = 8192  # the context at which --mxfp4 auto asks "does the dequantised model fit?"


@dataclass(frozen=True)
class NativeStatus:
    """Whether transformers will really run MXFP4 natively here, and if not, the first reason why."""

    ok: bool
    reason: str


@dataclass(frozen=True)
class LoadPlan:
    """What ``TransformersEngine.load`` will do (``mxfp4`` is None for a checkpoint without MXFP4 experts)."""

    device: str
    dtype: str
    mxfp4: str | None
    max_model_len: int
    context_reason: str
    estimate: MemoryEstimate
    native: NativeStatus | None = None

    @property
    def how(self) -> str:
        """The load path in words, for the ready line and the memory line."""
        if self.mxfp4 is None:
            return self.dtype
        if self.mxfp4 == "native":
            return "MXFP4 native kernels"
        return f"{self.dtype}, MXFP4 {'packed' if self.mxfp4 == 'packed' else 'dequantised'}"


def resolve_dtype(dtype: str, device: str) -> str:
    """``auto``: bfloat16 on a GPU, float32 on the CPU (``plan_load`` makes it bfloat16 for packed experts)."""
    if dtype == "auto":
        return "bfloat16" if device.startswith("cuda") else "float32"
    if dtype in DTYPES:
        return dtype
    raise UsageError(f"unknown dtype {dtype!r}: use auto, bfloat16, float16 or float32")


def _version(dist: str) -> str | None:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return None


def _at_least(found: str, wanted: str) -> bool:
    from packaging.version import Version

    return Version(found) >= Version(wanted)


def kernels_window() -> tuple[str, str]:
    """The ``kernels`` versions the installed transformers accepts, as ``(min, max_exclusive)``."""
    try:
        from transformers.utils import import_utils

        return str(import_utils.KERNELS_MIN_VERSION), str(import_utils.KERNELS_MAX_VERSION)
    except (ImportError, AttributeError):
        return "0.19.1", "0.20.0"  # transformers 5.25's window


def kernel_cached(hub_cache: Path, local_kernels: str | None = None) -> bool:
    """Whether kernels can load ``KERNEL_REPO`` version ``KERNEL_VERSION`` offline: named in ``LOCAL_KERNELS``
    or in the Hub cache with its ``refs/v1`` and a snapshot holding a ``build/`` folder."""
    if local_kernels and any(item.split("=", 1)[0].strip() == KERNEL_REPO for item in local_kernels.split(":")):
        return True
    repo = Path(hub_cache) / ("models--" + KERNEL_REPO.replace("/", "--"))
    ref = repo / "refs" / f"v{KERNEL_VERSION}"
    if not ref.is_file():
        return False
    snapshot = repo / "snapshots" / ref.read_text().strip()
    return (snapshot / "build").is_dir()


def native_status(device: str, hub_cache: Path | None = None, local_kernels: str | None = None,
                  model_dir: Path | None = None) -> NativeStatus:
    """Every condition transformers checks before it runs MXFP4 natively (else it silently dequantises), plus the
    kernel being present locally (``gptoss serve`` is offline): fetched next to the model (``gptoss fetch``), named
    in ``LOCAL_KERNELS``, or in the Hub cache."""
    if not device.startswith("cuda"):
        return NativeStatus(False, "native MXFP4 kernels need a CUDA device")
    missing = [name for name in ("accelerate", "triton", "kernels") if importlib.util.find_spec(name) is None]
    if missing:
        return NativeStatus(False, f"native MXFP4 kernels need {', '.join(missing)} (pip install gptoss[native])")
    triton = _version("triton") or "0"
    if not _at_least(triton, "3.4.0"):
        return NativeStatus(False, f"native MXFP4 kernels need triton >= 3.4 (found {triton})")
    low, high = kernels_window()
    kernels = _version("kernels") or "0"
    if not (_at_least(kernels, low) and not _at_least(kernels, high)):
        return NativeStatus(False, f"this transformers needs kernels >= {low}, < {high} (found {kernels})")
    import torch

    capability = torch.cuda.get_device_capability(torch.device(device))
    if capability < (7, 5):
        return NativeStatus(False, f"native MXFP4 kernels need compute capability >= 7.5 (found "
                                   f"{capability[0]}.{capability[1]})")
    fetched = model_dir is not None and fetched_kernel(model_dir) is not None
    if not fetched and (hub_cache is None or not kernel_cached(hub_cache, local_kernels)):
        return NativeStatus(False, f"the kernel {KERNEL_REPO} (version {KERNEL_VERSION}) is not in the local cache "
                                   "(run `gptoss fetch` online to fetch it)")
    return NativeStatus(True, f"kernels {kernels}, triton {triton}, compute capability "
                              f"{capability[0]}.{capability[1]}")


def _fits(model_dir: Path, device: str, dtype: str, path: str, tokens: int, available: int | None) -> bool:
    return estimate_memory(model_dir, device, dtype, max_model_len=tokens, mxfp4=path, available=available).fits


def choose_path(mode: str, native: NativeStatus, model_dir: Path, device: str, dtype: str, tokens: int,
                available: int | None) -> str:
    """The MXFP4 path for ``--mxfp4 mode`` (see the module docstring)."""
    if mode not in MXFP4_MODES:
        raise UsageError(f"--mxfp4 must be one of {', '.join(MXFP4_MODES)}, got {mode!r}")
    if mode == "native" and not native.ok:
        raise CouldNotRun(f"--mxfp4 native cannot run here: {native.reason}",
                          hint="use --mxfp4 packed (pure torch, any device) or --mxfp4 auto")
    if mode != "auto":
        return mode
    if native.ok:
        return "native"
    return "dequantise" if _fits(model_dir, device, dtype, "dequantise", tokens, available) else "packed"


def fit_context(model_dir: Path, device: str, dtype: str, path: str | None, limit: int,
                available: int | None) -> tuple[int, str]:
    """The largest context (a multiple of ``MIN_CONTEXT``, at most ``limit``) that fits, and why that one."""
    if available is None or _fits(model_dir, device, dtype, path or "none", limit, available):
        return limit, "the model's limit" if available is not None else "the model's limit; free memory unknown"
    low, high = 0, limit // MIN_CONTEXT  # in units of MIN_CONTEXT: low fits (or is 0), high does not
    while high - low > 1:
        mid = (low + high) // 2
        if _fits(model_dir, device, dtype, path or "none", mid * MIN_CONTEXT, available):
            low = mid
        else:
            high = mid
    if low == 0:
        check_memory(model_dir, device, dtype, max_model_len=MIN_CONTEXT, mxfp4=path or "none", available=available)
    return low * MIN_CONTEXT, f"the most that fits in {gib(available)} available on {device}"


def plan_load(model_dir: Path, device: str, dtype_request: str, *, max_model_len: int | None, mxfp4: str = "auto",
              hub_cache: Path | None = None, local_kernels: str | None = None,
              available: int | None = None) -> LoadPlan:
    """Decide path, dtype and context for ``model_dir`` on the resolved ``device``; raise CouldNotRun (exit 3)
    when it cannot fit. ``available`` overrides the free-memory probe (tests)."""
    from gptoss_cli.serve.engines.transformers.memory import available_bytes

    config = read_config(model_dir)
    limit = int(config.get("max_position_embeddings") or 4096)
    tokens = min(max_model_len or limit, limit)
    free = available if available is not None else available_bytes(device)
    quantised = (config.get("quantization_config") or {}).get("quant_method") == "mxfp4"
    dtype = resolve_dtype(dtype_request, device)
    native = native_status(device, hub_cache, local_kernels, model_dir) if quantised else None
    path = None
    if quantised:
        assert native is not None
        path = choose_path(mxfp4, native, model_dir, device, dtype, min(tokens, max_model_len or _PROBE_CONTEXT),
                           free)
        if path == "packed" and dtype_request == "auto":
            dtype = "bfloat16"  # packed: everything but the experts in bf16, on the CPU too
    elif mxfp4 not in ("auto", *MXFP4_MODES):
        raise UsageError(f"--mxfp4 must be one of {', '.join(MXFP4_MODES)}, got {mxfp4!r}")
    if max_model_len is None:
        tokens, reason = fit_context(model_dir, device, dtype, path, limit, free)
    else:
        reason = "--max-model-len" if max_model_len <= limit else f"the model's limit (--max-model-len {max_model_len})"
    est = check_memory(model_dir, device, dtype, max_model_len=tokens, mxfp4=path or "none", available=free)
    return LoadPlan(device, dtype, path, tokens, reason, est, native)


__all__ = ["KERNEL_REPO", "KERNEL_VERSION", "LoadPlan", "MXFP4_MODES", "NativeStatus", "choose_path",
           "fit_context", "kernel_cached", "kernels_window", "native_status", "plan_load", "resolve_dtype"]
