"""Packed MXFP4 experts in pure torch: gpt-oss served from its stored 4-bit experts on any CPU or CUDA device.

The checkpoint stores each expert matrix as FP4 e2m1 nibbles (``*_blocks``: uint8 ``[E, rows, cols/32, 16]``, two
values per byte, low nibble first) plus one E8M0 exponent per 32 values (``*_scales``: uint8 ``[E, rows, cols/32]``,
biased by 127). ``PackedExperts`` keeps both as stored and, at every forward, dequantises only the experts the router
picked, ``CHUNK_ROWS`` rows at a time, into the compute dtype: the weights stay at ~4.25 bits per value (13.8 GB for
gpt-oss-20b instead of 41.8 GB in bf16) and the transient is a few MB per chunk. Dequantised values are exact powers
of two times {0, .5, 1, 1.5, 2, 3, 4, 6}, so the matrices it multiplies by are the ones transformers' own
dequantisation (``integrations/mxfp4.py``) produces; the forward follows ``GptOssExperts.forward`` step by step.

``load_packed(model_dir, device, dtype)`` builds the model on the meta device, swaps every ``mlp.experts`` for a
``PackedExperts`` and reads each tensor from the safetensors files with plain reads (no mmap, so the resident set
grows by the weights only), converting floating tensors to ``dtype``. No Hub, no triton, no ``kernels``.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any, Iterator

import torch
from torch import nn

from gptoss_cli.errors import CouldNotRun
from gptoss_cli.serve.engines.transformers.memory import PACKED_CHUNK_ROWS, read_safetensors_header

FP4_VALUES = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0)
CHUNK_ROWS = PACKED_CHUNK_ROWS  # rows of one expert matrix dequantised at once (1024 x 2880: 5.6 MiB in bf16)
_STORED = {"BF16": torch.bfloat16, "F16": torch.float16, "F32": torch.float32, "U8": torch.uint8,
           "I64": torch.int64, "I32": torch.int32}
_EXPERT_TENSORS = ("gate_up_proj_blocks", "gate_up_proj_scales", "gate_up_proj_bias", "down_proj_blocks",
                   "down_proj_scales", "down_proj_bias")


_PAIR_INT = {2: torch.int32, 4: torch.int64}  # one integer holds the two values a byte decodes to


def _scaled_table(dtype: torch.dtype, device: Any) -> torch.Tensor:
    """``[256 * 256]`` integers: entry ``scale << 8 | byte`` holds, as two ``dtype`` values, ``byte``'s low and
    high nibble times ``2 ** (scale - 127)``, so one gather dequantises a byte with its scale applied (exact:
    the products are computed in float64 and are powers of two times FP4 values)."""
    lut = torch.tensor(FP4_VALUES, dtype=torch.float64)
    byte = torch.arange(256)
    power = torch.exp2(torch.arange(256, dtype=torch.float64) - 127)[:, None]
    pair = torch.stack([lut[byte & 0x0F][None, :] * power, lut[byte >> 4][None, :] * power], dim=-1).to(dtype)
    width = torch.empty((), dtype=dtype).element_size()
    return pair.contiguous().view(_PAIR_INT[width]).reshape(-1).to(device)


def dequantize(blocks: torch.Tensor, scales: torch.Tensor, dtype: torch.dtype,
               table: torch.Tensor | None = None) -> torch.Tensor:
    """``[rows, G, 16]`` FP4 blocks with ``[rows, G]`` E8M0 scales → ``[rows, G * 32]`` values at ``dtype``."""
    rows, groups, width = blocks.shape
    table = _scaled_table(dtype, blocks.device) if table is None else table
    index = (scales.to(torch.int32).unsqueeze(-1) << 8) | blocks.to(torch.int32)
    return table.index_select(0, index.view(-1)).view(dtype).view(rows, groups * width * 2)


class PackedExperts(nn.Module):
    """Drop-in for ``GptOssExperts`` that keeps the experts as stored (see the module docstring)."""

    def __init__(self, num_experts: int, hidden: int, intermediate: int, *, alpha: float, limit: float,
                 dtype: torch.dtype) -> None:
        super().__init__()
        self.num_experts, self.alpha, self.limit = num_experts, alpha, limit
        shapes = {
            "gate_up_proj_blocks": ((num_experts, 2 * intermediate, hidden // 32, 16), torch.uint8),
            "gate_up_proj_scales": ((num_experts, 2 * intermediate, hidden // 32), torch.uint8),
            "gate_up_proj_bias": ((num_experts, 2 * intermediate), dtype),
            "down_proj_blocks": ((num_experts, hidden, intermediate // 32, 16), torch.uint8),
            "down_proj_scales": ((num_experts, hidden, intermediate // 32), torch.uint8),
            "down_proj_bias": ((num_experts, hidden), dtype),
        }
        for name, (shape, kind) in shapes.items():
            self.register_buffer(name, torch.empty(shape, dtype=kind))
        self._tables: dict[tuple[torch.dtype, Any], torch.Tensor] = {}

    def _table(self, dtype: torch.dtype, device: Any) -> torch.Tensor:
        key = (dtype, device)
        if key not in self._tables:
            self._tables[key] = _scaled_table(dtype, device)
        return self._tables[key]

    def _project(self, x: torch.Tensor, blocks: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
        """``x @ W.T`` for the stored matrix ``W`` (``[rows, cols]``), dequantised ``CHUNK_ROWS`` rows at a time."""
        table = self._table(x.dtype, x.device)
        parts = [x @ dequantize(blocks[r:r + CHUNK_ROWS], scales[r:r + CHUNK_ROWS], x.dtype, table).T
                 for r in range(0, blocks.shape[0], CHUNK_ROWS)]
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)

    def _apply_gate(self, gate_up: torch.Tensor) -> torch.Tensor:
        gate, up = gate_up[..., ::2], gate_up[..., 1::2]
        gate = gate.clamp(min=None, max=self.limit)
        up = up.clamp(min=-self.limit, max=self.limit)
        return (up + 1) * (gate * torch.sigmoid(gate * self.alpha))

    def forward(self, hidden_states: torch.Tensor, router_indices: torch.Tensor,
                routing_weights: torch.Tensor) -> torch.Tensor:
        out = torch.zeros_like(hidden_states)
        with torch.no_grad():
            mask = nn.functional.one_hot(router_indices, num_classes=self.num_experts).permute(2, 1, 0)
            hit = torch.greater(mask.sum(dim=(-1, -2)), 0).nonzero().flatten().tolist()
        for e in hit:
            top_k_pos, token_idx = torch.where(mask[e])
            x = hidden_states[token_idx]
            gate_up = self._project(x, self.gate_up_proj_blocks[e], self.gate_up_proj_scales[e])
            gated = self._apply_gate(gate_up + self.gate_up_proj_bias[e])
            y = self._project(gated, self.down_proj_blocks[e], self.down_proj_scales[e]) + self.down_proj_bias[e]
            out.index_add_(0, token_idx, (y * routing_weights[token_idx, top_k_pos, None]).to(out.dtype))
        return out


class FoldedLinear(nn.Linear):
    """``nn.Linear`` that multiplies a 2-D view of its input. gpt-oss hands ``lm_head`` the last position as a
    ``[1, 1, hidden]`` slice whose strides send ``torch.matmul`` down its batched path, which copies the whole
    transposed weight first (1.1 GiB for the 201088-token vocabulary, seconds per token on a CPU)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = nn.functional.linear(x.reshape(-1, x.shape[-1]), self.weight, self.bias)
        return out.view(*x.shape[:-1], out.shape[-1])


def fold_lm_head(model: Any) -> Any:
    """Make ``model.lm_head`` a ``FoldedLinear`` (same weights, same results)."""
    head = getattr(model, "lm_head", None)
    if type(head) is nn.Linear:
        head.__class__ = FoldedLinear
    return model


# -- loading ---------------------------------------------------------------------------------------------------------


def _tensors(path: Path) -> Iterator[tuple[str, torch.Tensor]]:
    """Every tensor of one safetensors file, read with plain ``readinto`` (no mmap), in file order."""
    header = read_safetensors_header(path)
    with open(path, "rb") as fh:
        (size,) = struct.unpack("<Q", fh.read(8))
        base = 8 + size
        for name, info in sorted(header.items(), key=lambda item: item[1]["data_offsets"][0]):
            kind = _STORED.get(info["dtype"])
            if kind is None:
                raise CouldNotRun(f"{path.name}: tensor {name} has dtype {info['dtype']}, which gptoss cannot load")
            start, end = info["data_offsets"]
            raw = torch.empty(end - start, dtype=torch.uint8)
            fh.seek(base + start)
            if fh.readinto(memoryview(raw.numpy())) != end - start:
                raise CouldNotRun(f"{path} is truncated (tensor {name})", hint="run `gptoss verify`")
            yield name, raw.view(kind).reshape(info["shape"])


def _skeleton(model_dir: Path, dtype: torch.dtype) -> Any:
    """The model on the meta device, its experts swapped for ``PackedExperts``."""
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(str(model_dir), local_files_only=True, trust_remote_code=False)
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # the experts are ours: transformers must not quantise or dequantise
    config._attn_implementation = "eager"
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation="eager")
        for layer in model.model.layers:
            layer.mlp.experts = PackedExperts(
                config.num_local_experts, config.hidden_size, config.intermediate_size,
                alpha=float(getattr(config, "swiglu_alpha", 1.702)), limit=float(config.swiglu_limit), dtype=dtype)
    return model


def _assign(model: Any, name: str, tensor: torch.Tensor) -> None:
    owner_name, _, attr = name.rpartition(".")
    owner = model.get_submodule(owner_name)
    if attr in owner._parameters:
        owner._parameters[attr] = nn.Parameter(tensor, requires_grad=False)
    elif attr in owner._buffers:
        owner._buffers[attr] = tensor
    else:
        raise CouldNotRun(f"the checkpoint has a tensor {name} that the model does not have")


def load_packed(model_dir: Path, device: str, dtype: str) -> Any:
    """The gpt-oss model in ``model_dir`` with packed MXFP4 experts, on ``device``, the rest at ``dtype``."""
    target = getattr(torch, dtype)
    model = _skeleton(model_dir, target)
    for path in sorted(Path(model_dir).glob("*.safetensors")):
        for name, tensor in _tensors(path):
            if tensor.is_floating_point() and tensor.dtype != target:
                tensor = tensor.to(target)
            _assign(model, name, tensor.to(device))
    rotary = model.model.rotary_emb  # its buffers are computed, not stored
    with torch.device(device):
        model.model.rotary_emb = type(rotary)(config=model.config)
    missing = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if missing:
        raise CouldNotRun(f"the checkpoint in {model_dir} lacks {len(missing)} tensors, e.g. {missing[0]}",
                          hint="run `gptoss verify`; the folder must hold a whole gpt-oss checkpoint")
    gen = Path(model_dir) / "generation_config.json"
    if gen.is_file():
        from transformers import GenerationConfig

        model.generation_config = GenerationConfig.from_dict(json.loads(gen.read_text(encoding="utf-8")))
    return model.eval()


__all__ = ["CHUNK_ROWS", "FP4_VALUES", "FoldedLinear", "PackedExperts", "dequantize", "fold_lm_head", "load_packed"]
