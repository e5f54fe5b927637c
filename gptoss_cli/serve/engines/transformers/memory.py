"""How much memory a model folder needs once loaded, estimated before loading (refuse with numbers, not an OOM kill).

The estimate reads only ``config.json`` and the JSON headers of the top-level ``*.safetensors`` files (a few KB each),
so it is instant even for a 14 GB checkpoint and needs no torch:

    weights     every floating tensor at the target dtype; MXFP4 expert blocks either as stored (native kernels,
                packed experts) or dequantised (two values per byte, at the target dtype; their scales vanish)
    transient   dequantise: transformers dequantises one expert tensor at a time (its output, int32 nibble
                indices, the transposed copy, the mapped file pages: 1.75 times the largest dequantised expert
                tensor), plus, when tensors change dtype, one shard file's pages (transformers reads them through
                mmap); packed: one chunk of rows dequantised at a time, plus, when the dtype differs from the
                stored one, the largest tensor read once (gptoss reads without mmap)
    KV cache    one sequence of ``max_model_len`` tokens: full-attention layers hold every token, sliding layers
                at most ``sliding_window`` tokens
    attention   eager attention scores for one prefill chunk against the whole context (the engine prefills in
                chunks of ``PREFILL_CHUNK`` tokens)
    overhead    2 % of the weights (allocator slack), plus on the CPU the process itself (python, torch,
                transformers, the server, the tokenizer: 640 MiB measured) or on a GPU 1 GiB (CUDA context)

Measured on the 24 GiB CPU box (bench/mxfp4_fits.py: full-width gpt-oss-20b with 1 or 2 layers, a prompt that
fills a 2048-token context), peak RSS against this estimate: packed bf16 (2 layers) 3.89 / 3.95 GiB, dequantised
bf16 (2 layers) 7.85 / 7.88 GiB, dequantised float32 (1 layer) 14.47 / 14.59 GiB.

Available memory is the free memory of the CUDA device (``torch.cuda.mem_get_info``) or ``MemAvailable`` from
``/proc/meminfo`` on the CPU; where neither can be read the check is skipped.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gptoss_cli.errors import CouldNotRun

GIB = 1024**3
PREFILL_CHUNK = 256
RUNTIME_BYTES = 640 * 1024**2  # the serving process itself on the CPU (see the module docstring)
PACKED_CHUNK_ROWS = 1024  # rows of one packed expert matrix dequantised at once (serve/engines/transformers/mxfp4.py)
WEIGHT_PATHS = ("none", "dequantise", "packed", "native")  # how MXFP4 experts are held; "none": not MXFP4
_DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
_STORED_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "F8_E4M3": 1, "F8_E5M2": 1, "I64": 8, "I32": 4, "I16": 2,
                 "I8": 1, "U8": 1, "BOOL": 1, "U16": 2, "U32": 4, "U64": 8}
_FLOAT = {"F64", "F32", "F16", "BF16"}


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes a model needs on ``device`` and bytes the device has (None when unknown)."""

    needed_bytes: int
    available_bytes: int | None
    device: str
    detail: str

    @property
    def fits(self) -> bool:
        return self.available_bytes is None or self.needed_bytes <= self.available_bytes


def gib(n: int | float) -> str:
    return f"{n / GIB:.1f} GiB"


def read_safetensors_header(path: Path) -> dict[str, Any]:
    """The tensor table of a safetensors file (name → dtype, shape, data_offsets), without reading any data."""
    with open(path, "rb") as fh:
        raw = fh.read(8)
        if len(raw) != 8:
            raise CouldNotRun(f"{path} is not a safetensors file (too short)")
        (size,) = struct.unpack("<Q", raw)
        if size > 100 * 1024 * 1024:
            raise CouldNotRun(f"{path} is not a safetensors file (header of {size} bytes)")
        try:
            header = json.loads(fh.read(size))
        except ValueError as exc:
            raise CouldNotRun(f"{path} has an unreadable safetensors header: {exc}") from None
    header.pop("__metadata__", None)
    return header


def _stored(path: str) -> bool:
    if path not in WEIGHT_PATHS:
        raise ValueError(f"unknown weight path {path!r}")
    return path in ("packed", "native")


def weight_bytes(model_dir: Path, dtype: str, *, mxfp4: str = "dequantise") -> int:
    """Bytes of the loaded weights at ``dtype``; MXFP4 experts as stored for ``mxfp4`` packed or native."""
    return _weights(model_dir, dtype, mxfp4)[0]


def _weights(model_dir: Path, dtype: str, mxfp4: str) -> tuple[int, int]:
    """``(weight bytes, load transient bytes)`` (see the module docstring)."""
    target, stored = _DTYPE_BYTES[dtype], _stored(mxfp4)
    total = largest_expert = largest_converted = largest_file = 0
    for path in sorted(Path(model_dir).glob("*.safetensors")):
        largest_file = max(largest_file, path.stat().st_size)
        for name, info in read_safetensors_header(path).items():
            kind, numel = info["dtype"], math.prod(info["shape"])
            if kind == "U8" and name.endswith(("_blocks", "_scales")) and not stored:
                values = numel * 2 if name.endswith("_blocks") else 0
                total += values * target
                largest_expert = max(largest_expert, values)
            elif kind in _FLOAT:
                total += numel * target
                if _STORED_BYTES[kind] != target:
                    largest_converted = max(largest_converted, numel * _STORED_BYTES[kind])
            else:
                total += numel * _STORED_BYTES.get(kind, 4)
    if not stored:
        return total, int(largest_expert * target * 1.75) + (largest_file if largest_converted else 0)
    return total, largest_converted if mxfp4 == "packed" else 0


@dataclass(frozen=True)
class KVShape:
    """The KV cache of a model: full-attention layers hold every token, sliding layers at most ``window``."""

    full_layers: int
    sliding_layers: int
    window: int
    layer_token_bytes: int  # K and V of one layer for one token

    def bytes_for(self, tokens: int) -> int:
        """KV cache of one sequence of ``tokens`` tokens."""
        return self.layer_token_bytes * (self.full_layers * tokens + self.sliding_layers * min(tokens, self.window))


def kv_shape(config: Any, dtype_bytes: int) -> KVShape:
    """The KV shape from a ``config.json`` dict or a transformers config object (the one KV sizing rule: the
    memory check and the batching engine's budget both use it)."""
    def get(name: str, default: Any = None) -> Any:
        value = config.get(name) if isinstance(config, dict) else getattr(config, name, None)
        return default if value is None else value

    layers = int(get("num_hidden_layers", 0))
    heads = int(get("num_attention_heads", 1))
    kv_heads = int(get("num_key_value_heads") or heads)
    head_dim = int(get("head_dim") or int(get("hidden_size", 0)) // max(heads, 1))
    window = int(get("sliding_window") or 0)
    kinds = list(get("layer_types") or ["full_attention"] * layers)
    sliding = sum(1 for kind in kinds if kind == "sliding_attention") if window else 0
    return KVShape(full_layers=len(kinds) - sliding, sliding_layers=sliding, window=window,
                   layer_token_bytes=2 * kv_heads * head_dim * dtype_bytes)


def kv_cache_bytes(config: dict[str, Any], tokens: int, dtype: str) -> int:
    """KV cache of one sequence of ``tokens`` tokens."""
    return kv_shape(config, _DTYPE_BYTES[dtype]).bytes_for(tokens)


def attention_bytes(config: dict[str, Any], tokens: int, dtype: str) -> int:
    """Peak eager-attention scratch for one prefill chunk against ``tokens`` keys (scores, probabilities, sinks)."""
    heads = int(config.get("num_attention_heads", 1))
    return 3 * heads * min(tokens, PREFILL_CHUNK) * tokens * _DTYPE_BYTES[dtype]


def available_bytes(device: str) -> int | None:
    """Free memory on ``device`` ("cpu", "cuda", "cuda:N"), or None when it cannot be read."""
    if device.startswith("cuda"):
        import torch

        free, _total = torch.cuda.mem_get_info(torch.device(device))
        return int(free)
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def read_config(model_dir: Path) -> dict[str, Any]:
    path = Path(model_dir) / "config.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CouldNotRun(f"{model_dir} has no config.json",
                          hint="point at a model folder from `gptoss fetch`") from None
    except ValueError as exc:
        raise CouldNotRun(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(config, dict):
        raise CouldNotRun(f"{path} is not a JSON object", hint="point at a model folder from `gptoss fetch`")
    return config


def estimate_memory(
    model_dir: Path,
    device: str,
    dtype: str,
    *,
    max_model_len: int | None = None,
    mxfp4: str = "dequantise",
    available: int | None = None,
) -> MemoryEstimate:
    """Estimate what loading ``model_dir`` on ``device`` at ``dtype`` needs (``mxfp4``: one of ``WEIGHT_PATHS``,
    ignored for a checkpoint without MXFP4 experts); ``available`` overrides the probe."""
    config = read_config(model_dir)
    tokens = int(max_model_len or config.get("max_position_embeddings") or 4096)
    quant = (config.get("quantization_config") or {}).get("quant_method")
    path = mxfp4 if quant == "mxfp4" else "none"
    weights, transient = _weights(model_dir, dtype, path)
    if path == "packed":
        transient = max(transient, PACKED_CHUNK_ROWS * int(config.get("hidden_size", 0)) * (2 * _DTYPE_BYTES[dtype] + 4))
    kv = kv_cache_bytes(config, tokens, dtype)
    scratch = attention_bytes(config, tokens, dtype)
    overhead = weights // 50 + (GIB if device.startswith("cuda") else RUNTIME_BYTES)
    how = {"none": f"{dtype} weights", "native": "MXFP4 weights (native)",
           "packed": f"MXFP4 experts packed, the rest {dtype},",
           "dequantise": f"MXFP4 weights dequantised to {dtype}"}[path]
    detail = (
        f"{how} {gib(weights)} + KV cache for {tokens} tokens {gib(kv)} + attention scratch {gib(scratch)}"
        + (f" + {'dequantisation' if path == 'dequantise' else 'load'} transient {gib(transient)}" if transient >= GIB // 20 else "")
        + f" + overhead {gib(overhead)}"
    )
    free = available if available is not None else available_bytes(device)
    return MemoryEstimate(weights + kv + scratch + transient + overhead, free, device, detail)


def check_memory(
    model_dir: Path,
    device: str,
    dtype: str,
    *,
    max_model_len: int | None = None,
    mxfp4: str = "dequantise",
    available: int | None = None,
) -> MemoryEstimate:
    """Like ``estimate_memory``, but raise CouldNotRun with the numbers when the model does not fit."""
    est = estimate_memory(model_dir, device, dtype, max_model_len=max_model_len, mxfp4=mxfp4, available=available)
    if not est.fits:
        assert est.available_bytes is not None
        raise CouldNotRun(
            f"the model in {model_dir} needs about {gib(est.needed_bytes)} on {device} ({est.detail}), "
            f"but the device has {gib(est.available_bytes)} available",
            hint="use a device with more memory or a smaller --max-model-len"
            + (", or --dtype bfloat16" if dtype == "float32" else "")
            + (", or --mxfp4 packed" if "dequantised" in est.detail else ""),
        )
    return est


__all__ = [
    "KVShape",
    "MemoryEstimate",
    "PACKED_CHUNK_ROWS",
    "WEIGHT_PATHS",
    "check_memory",
    "estimate_memory",
    "kv_cache_bytes",
    "kv_shape",
    "read_safetensors_header",
    "weight_bytes",
]
