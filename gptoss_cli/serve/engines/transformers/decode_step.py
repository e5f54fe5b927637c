"""One decode step of gpt-oss (one new token per row) without transformers' per-call machinery (torch inside).

Why: at one token per row the model's arithmetic is small and a step's time goes to Python around it. Profiled on
the demo model (``bench/serve_load.py``, py-spy on the batch thread): config look-ups through
``PreTrainedConfig.__getattribute__``, the output-capturing and deprecation wrappers, ``repeat_kv`` copying keys
for every query group, the experts dispatch (one-hot routing masks, a sort and a histogram per layer) and three
projections where one does. ``DecodeStep`` runs the same computation — the same modules' weights, the same
rotary embedding module, the same cache layers (``layer.update``), the same sinks softmax — in fewer operators:

- q, k and v are one matrix product: the three weights become views of one ``[q; k; v]`` matrix (no extra memory
  kept; the model's own forward keeps working on the views) — for layers up to ``FUSE_QKV_BYTES``; larger ones keep
  their three products,
- grouped-query attention multiplies each key/value head with its query group directly (no repeated keys),
- a small model's experts run on every row as two batched products and each row keeps its own experts' outputs
  (only while that costs little: ``ALL_EXPERTS_MACS``); larger models and batches, packed MXFP4 experts and any other
  experts module are called as they are,
- RMSNorm is one fused operator when input and weight are float32 (the same formula; otherwise transformers' own
  float32 sequence).

Results equal transformers' forward to float rounding (tests compare logits and greedy answers). ``decode_step_for``
returns None — and the caller keeps ``model(...)`` — unless the model is exactly the eager transformers gpt-oss
(attention implementation ``eager``, the stock layer, attention, router and norm classes, dense or
``PackedExperts`` experts, dynamic cache layers); so native MXFP4 kernels, other architectures and other attention
implementations never take this path. ``gptoss serve --decode-step transformers`` turns it off
(``keep_transformers_forward``).
"""

from __future__ import annotations

import logging
from typing import Any, Sequence

import torch
import torch.nn.functional as F

ALL_EXPERTS_MACS = 1 << 23  # run every expert on every row while that costs at most this many multiply-adds
FUSE_QKV_BYTES = 8 << 20  # one [q; k; v] matrix per layer up to this size (a copy: the originals may be mmapped pages)
log = logging.getLogger("gptoss.serve.decode_step")
_LAYER_CLASSES = {"GptOssDecoderLayer", "GptOssAttention", "GptOssMLP", "GptOssTopKRouter", "GptOssRMSNorm"}
_EXPERT_CLASSES = {"GptOssExperts", "PackedExperts"}
_CACHE_LAYERS = {"sliding_attention": "DynamicSlidingWindowLayer", "full_attention": "DynamicLayer"}


def _name(module: Any) -> str:
    return type(module).__name__


def supported(model: Any) -> str | None:
    """Why ``model`` cannot take the fast step (None: it can)."""
    config = getattr(model, "config", None)
    if getattr(config, "model_type", None) != "gpt_oss" or _name(model) != "GptOssForCausalLM":
        return "not a GptOssForCausalLM"
    if getattr(config, "_attn_implementation", None) != "eager":
        return "attention implementation is not eager"
    inner = model.model
    for layer in inner.layers:
        modules = (layer, layer.self_attn, layer.mlp, layer.mlp.router, layer.input_layernorm,
                   layer.post_attention_layernorm)
        if any(_name(m) not in _LAYER_CLASSES for m in modules) or _name(layer.mlp.experts) not in _EXPERT_CLASSES:
            return "a layer is not the stock transformers gpt-oss layer"
        attn = layer.self_attn
        if any(type(p) is not torch.nn.Linear for p in (attn.q_proj, attn.k_proj, attn.v_proj, attn.o_proj)):
            return "attention projections are not plain linear layers"
        if attn.q_proj.bias is None or attn.training:
            return "attention without biases (or in training mode)"
    if any(m._forward_hooks or m._forward_pre_hooks or hasattr(m, "_hf_hook") for m in model.modules()):
        return "the model has forward hooks"
    if len({p.device for p in model.parameters()}) != 1 or next(model.parameters()).device.type == "meta":
        return "the weights are not all on one device (offloaded or split)"
    return _cache_layers_differ(config)


def _cache_layers_differ(config: Any) -> str | None:
    """Why this transformers' ``DynamicCache(config=...)`` is not one dynamic layer per decoder layer, sliding
    layers keeping their window (the step relies on that: no sliding mask without padding)."""
    from transformers import DynamicCache

    try:
        layers = DynamicCache(config=config).layers
    except Exception:  # noqa: BLE001 - an older transformers: no per-layer caches
        return "this transformers' DynamicCache has no per-layer sliding caches"
    kinds = list(getattr(config, "layer_types", None) or [])
    if len(layers) != len(kinds) or any(_CACHE_LAYERS.get(k) != _name(c) for k, c in zip(kinds, layers)):
        return "this transformers' DynamicCache layers are not the dynamic (sliding) layers the step knows"
    return None


def decode_step_for(model: Any) -> "DecodeStep | None":
    """The ``DecodeStep`` of ``model`` (built once per model), or None when its steps must go through
    ``model(...)`` (``supported`` says why; logged once)."""
    step = getattr(model, "_gptoss_decode_step", False)
    if step is not False:
        return step
    reason = supported(model)
    step = DecodeStep(model) if reason is None else None
    if reason is not None:
        log.info("decode steps go through the transformers forward (%s)", reason)
    object.__setattr__(model, "_gptoss_decode_step", step)
    return step


def keep_transformers_forward(model: Any) -> None:
    """Every decode step of ``model`` goes through ``model(...)`` (``--decode-step transformers``)."""
    if getattr(model, "_gptoss_decode_step", False) is False:
        log.info("decode steps go through the transformers forward (--decode-step transformers)")
    object.__setattr__(model, "_gptoss_decode_step", None)


def _fuse_qkv(attn: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """One ``[q; k; v]`` weight and bias; the three projections keep views of it (same values, no copy kept)."""
    with torch.no_grad():
        projections = (attn.q_proj, attn.k_proj, attn.v_proj)
        weight = torch.cat([p.weight for p in projections], dim=0)
        bias = torch.cat([p.bias for p in projections], dim=0)
        start = 0
        for p in projections:
            rows = p.weight.shape[0]
            p.weight.data = weight[start:start + rows]
            p.bias.data = bias[start:start + rows]
            start += rows
    return weight, bias


class _Layer:
    """What one decoder layer's step needs, read once."""

    def __init__(self, layer: Any) -> None:
        attn, mlp = layer.self_attn, layer.mlp
        self.ln1, self.ln2 = layer.input_layernorm, layer.post_attention_layernorm
        size = sum(p.weight.numel() * p.weight.element_size() for p in (attn.q_proj, attn.k_proj, attn.v_proj))
        # small layers: one product instead of three; large ones keep theirs (the arithmetic dominates there, and a
        # fused copy of every layer's weights would cost memory while the pages it replaced may stay resident)
        self.wqkv, self.bqkv = _fuse_qkv(attn) if size <= FUSE_QKV_BYTES else (None, None)
        self.q_proj, self.k_proj, self.v_proj = attn.q_proj, attn.k_proj, attn.v_proj
        self.nq, self.nk = attn.q_proj.weight.shape[0], attn.k_proj.weight.shape[0]
        self.o_proj = attn.o_proj
        self.head_dim, self.groups, self.scaling = attn.head_dim, attn.num_key_value_groups, attn.scaling
        self.sinks = attn.sinks
        self.router, self.top_k = mlp.router, mlp.router.top_k
        self.experts = mlp.experts
        self.dense = _name(mlp.experts) == "GptOssExperts"


class DecodeStep:
    """``step(ids, positions, cache, masks)`` → the next-token logits ``[rows, vocab]`` of a decode step."""

    def __init__(self, model: Any) -> None:
        inner = model.model
        self.embed = inner.embed_tokens
        self.rotary = inner.rotary_emb
        self.norm = inner.norm
        self.lm_head = model.lm_head
        self.layer_types = list(model.config.layer_types)
        self.layers = [_Layer(layer) for layer in inner.layers]

    def __call__(self, ids: torch.Tensor, positions: torch.Tensor, cache: Any,
                 masks: dict[str, Any] | None) -> torch.Tensor:
        """``ids``/``positions``: ``[rows, 1]``; ``masks``: additive masks by layer type (None: no padding);
        ``cache``: a ``DynamicCache(config=model.config)`` (``supported`` checked once that it has the layers this
        step relies on)."""
        layers = cache.layers
        x = self.embed(ids)
        cos, sin = self.rotary(x, positions)
        cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
        masks = masks or {}
        for layer, kv, kind in zip(self.layers, layers, self.layer_types):
            x = x + self._attention(layer, _rms_norm(layer.ln1, x), cos, sin, kv, masks.get(kind))
            x = x + self._moe(layer, _rms_norm(layer.ln2, x))
        x = _rms_norm(self.norm, x)
        rows, _, hidden = x.shape
        return F.linear(x.reshape(rows, hidden), self.lm_head.weight, self.lm_head.bias)

    def one(self, token: int, position: int, cache: Any) -> torch.Tensor:
        """The float32 logits ``[vocab]`` after feeding ``token`` at ``position`` to a one-row ``cache``."""
        device = self.lm_head.weight.device
        ids = torch.tensor([[token]], dtype=torch.long, device=device)
        positions = torch.tensor([[position]], dtype=torch.long, device=device)
        return self(ids, positions, cache, None)[0].float()

    @staticmethod
    def _attention(p: _Layer, h: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, kv: Any,
                   mask: torch.Tensor | None) -> torch.Tensor:
        rows, d = h.shape[0], p.head_dim
        if p.wqkv is not None:
            qkv = F.linear(h, p.wqkv, p.bqkv)  # [rows, 1, (heads + 2 kv heads) * d]
            q, k, v = qkv[..., :p.nq], qkv[..., p.nq:p.nq + p.nk], qkv[..., p.nq + p.nk:]
        else:
            q, k, v = (F.linear(h, m.weight, m.bias) for m in (p.q_proj, p.k_proj, p.v_proj))
        q, k, v = (t.reshape(rows, 1, -1, d).transpose(1, 2) for t in (q, k, v))
        q, k = _rotate(q, cos, sin), _rotate(k, cos, sin)
        keys, values = kv.update(k, v)  # [rows, kv heads, T, d]
        kv_heads = keys.shape[1]
        scores = torch.matmul(q.reshape(rows, kv_heads, p.groups, d), keys.transpose(2, 3)) * p.scaling
        if mask is not None:  # [rows, 1, 1, T]: broadcast over heads and groups
            scores = scores + mask
        sinks = p.sinks.reshape(1, kv_heads, p.groups, 1).expand(rows, -1, -1, -1).to(scores.dtype)
        scores = torch.cat([scores, sinks], dim=-1)
        scores = scores - scores.amax(dim=-1, keepdim=True)
        probs = torch.softmax(scores, dim=-1)[..., :-1].to(values.dtype)
        out = torch.matmul(probs, values).reshape(rows, 1, -1)  # heads in order: kv head, then its group
        return p.o_proj(out)

    @staticmethod
    def _moe(p: _Layer, h: torch.Tensor) -> torch.Tensor:
        rows, _, hidden = h.shape
        flat = h.reshape(rows, hidden)
        logits = F.linear(flat, p.router.weight, p.router.bias)
        top, index = torch.topk(logits, p.top_k, dim=-1)
        weights = torch.softmax(top, dim=1, dtype=top.dtype)
        experts = p.experts
        if p.dense and _all_experts_macs(experts, rows) <= ALL_EXPERTS_MACS:
            out = _all_experts(experts, flat, index, weights)
        else:
            out = experts(flat, index, weights)
        return out.view(rows, 1, hidden)


def _rms_norm(norm: Any, x: torch.Tensor) -> torch.Tensor:
    weight, eps = norm.weight, norm.variance_epsilon
    if x.dtype == torch.float32 and weight.dtype == torch.float32:
        return F.rms_norm(x, (x.shape[-1],), weight, eps)
    h = x.to(torch.float32)
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
    return (weight * h).to(x.dtype)


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    first, second = torch.chunk(x, 2, dim=-1)
    return torch.cat((first * cos - second * sin, second * cos + first * sin), dim=-1)


def _all_experts_macs(experts: Any, rows: int) -> int:
    up, down = experts.gate_up_proj, experts.down_proj
    return up.shape[0] * rows * (up.shape[1] * up.shape[2] + down.shape[1] * down.shape[2])


def _all_experts(experts: Any, h: torch.Tensor, index: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Every expert on every row (two batched products, no gathering, no host sync), then each row keeps its chosen
    experts' outputs with their routing weights (the others get weight 0). Only for small models and batches
    (``ALL_EXPERTS_MACS``): it computes ``experts / top_k`` times the work of the chosen experts alone."""
    count = experts.gate_up_proj.shape[0]
    x = h.unsqueeze(0).expand(count, -1, -1)  # [experts, rows, hidden]
    gate_up = torch.baddbmm(experts.gate_up_proj_bias.unsqueeze(1), x, experts.gate_up_proj)
    gated = experts._apply_gate(gate_up)
    out = torch.baddbmm(experts.down_proj_bias.unsqueeze(1), gated, experts.down_proj)  # [experts, rows, hidden]
    route = torch.zeros((h.shape[0], count), dtype=out.dtype, device=h.device).scatter_(1, index, weights.to(out.dtype))
    return (out * route.t().unsqueeze(-1)).sum(dim=0).to(h.dtype)


__all__ = ["ALL_EXPERTS_MACS", "FUSE_QKV_BYTES", "DecodeStep", "decode_step_for", "keep_transformers_forward", "supported"]
