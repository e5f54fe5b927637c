"""Real model folders made small, for engine and server tests (import the helpers/fixtures you need).

- ``demo_model_dir`` (fixture): the demo model that ships in ``gptoss_cli/demo/model`` (read-only package data;
  never trained at test time).
- ``make_tiny_model(path, ...)``: a randomly initialised tiny ``GptOssForCausalLM`` (MoE, sinks, sliding window)
  saved as safetensors with a small byte-level tokenizer that carries the harmony special tokens.
- ``make_tiny_mxfp4_model(path)``: the same architecture saved in the MXFP4 checkpoint layout of the real 20b
  (``*_blocks`` / ``*_scales`` uint8 experts + ``quantization_config``).
- ``make_virtual_20b(path)``: config.json of openai/gpt-oss-20b plus header-only safetensors files with the real
  tensor names, dtypes and shapes (a few KB): enough for memory estimates, not for loading.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Any

import pytest

HARMONY_SPECIALS = (
    "<|startoftext|>", "<|endoftext|>", "<|return|>", "<|constrain|>", "<|channel|>", "<|start|>", "<|end|>",
    "<|message|>", "<|call|>",
)
_OFFLINE_VARS = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")


def load_engine(engine: Any) -> Any:
    """``engine.load()``, then undo the offline variables it sets for the process, so other tests see the
    environment they started with."""
    saved = {name: os.environ.get(name) for name in _OFFLINE_VARS}
    try:
        engine.load()
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    return engine


@pytest.fixture(scope="session")
def demo_model_dir() -> Path:
    """The shipped demo model folder."""
    from gptoss_cli.demo import demo_model_dir as shipped

    return shipped()


def tiny_config(vocab_size: int, **overrides: Any) -> Any:
    from transformers import GptOssConfig

    from gptoss_cli.demo.train import yarn_rope

    values: dict[str, Any] = dict(
        vocab_size=vocab_size, hidden_size=64, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, head_dim=16, num_local_experts=4, num_experts_per_tok=2, sliding_window=8,
        max_position_embeddings=1024, architectures=["GptOssForCausalLM"],
    )
    values.update(overrides)
    values.setdefault("rope_parameters", yarn_rope(values["max_position_embeddings"]))
    return GptOssConfig(**values)


def write_tokenizer(path: Path) -> Any:
    """A byte-level BPE tokenizer without merges (one token per byte) plus the harmony specials as added tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {ch: i for i, ch in enumerate(sorted(alphabet))}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(list(HARMONY_SPECIALS))
    tok.save(str(path / "tokenizer.json"))
    (path / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "PreTrainedTokenizerFast"}))
    return tok


def make_tiny_model(path: Path, *, seed: int = 0, eos: tuple[int, ...] | None = None, pad: int | None = None,
                    **config: Any) -> Path:
    """Random tiny GptOssForCausalLM + tokenizer + generation_config (eos <|return|>, <|call|>) in ``path``;
    ``vocab_size`` / ``eos`` / ``pad`` override the byte tokenizer's (for a tokenizer copied in afterwards)."""
    import torch
    from transformers import GenerationConfig, GptOssForCausalLM
    from transformers.utils import logging as hf_logging

    path.mkdir(parents=True, exist_ok=True)
    tok = write_tokenizer(path)
    torch.manual_seed(seed)
    model = GptOssForCausalLM(tiny_config(config.pop("vocab_size", tok.get_vocab_size()), **config))
    with torch.no_grad():  # non-trivial sinks so the sink path matters
        for layer in model.model.layers:
            layer.self_attn.sinks.normal_(0, 1)
    ids = list(eos or (tok.token_to_id("<|return|>"), tok.token_to_id("<|call|>")))
    pad = tok.token_to_id("<|endoftext|>") if pad is None else pad
    model.generation_config = GenerationConfig(eos_token_id=ids, pad_token_id=pad)
    hf_logging.disable_progress_bar()
    model.save_pretrained(str(path), safe_serialization=True)
    return path


def make_tiny_mxfp4_model(path: Path, *, seed: int = 0, **config: Any) -> Path:
    """The tiny architecture in the real MXFP4 checkpoint layout (experts as FP4 blocks + E8M0 scales); ``config``
    as for ``make_tiny_model``."""
    import torch
    from safetensors.torch import load_file, save_file

    make_tiny_model(path, seed=seed, **config)
    weights = load_file(str(path / "model.safetensors"))
    gen = torch.Generator().manual_seed(seed)
    for name in [n for n in weights if n.endswith(("experts.gate_up_proj", "experts.down_proj"))]:
        experts, rows_in, cols_out = weights.pop(name).shape  # stored transposed: [E, in, out]
        weights[f"{name}_blocks"] = torch.randint(0, 256, (experts, cols_out, rows_in // 32, 16), generator=gen,
                                                  dtype=torch.uint8)
        weights[f"{name}_scales"] = torch.randint(118, 124, (experts, cols_out, rows_in // 32), generator=gen,
                                                  dtype=torch.uint8)
    save_file(weights, str(path / "model.safetensors"), metadata={"format": "pt"})
    config = json.loads((path / "config.json").read_text())
    config["quantization_config"] = {
        "quant_method": "mxfp4",
        "modules_to_not_convert": ["model.layers.*.self_attn", "model.layers.*.mlp.router", "model.embed_tokens",
                                   "lm_head"],
    }
    (path / "config.json").write_text(json.dumps(config, indent=2))
    return path


GPT_OSS_20B_CONFIG: dict[str, Any] = {
    "architectures": ["GptOssForCausalLM"], "model_type": "gpt_oss", "hidden_size": 2880,
    "intermediate_size": 2880, "num_hidden_layers": 24, "num_attention_heads": 64, "num_key_value_heads": 8,
    "head_dim": 64, "num_local_experts": 32, "num_experts_per_tok": 4, "sliding_window": 128,
    "layer_types": ["sliding_attention", "full_attention"] * 12, "max_position_embeddings": 131072,
    "vocab_size": 201088, "tie_word_embeddings": False, "torch_dtype": "bfloat16",
    "quantization_config": {"quant_method": "mxfp4"},
}


def _tensors_20b() -> dict[str, tuple[str, list[int]]]:
    h, e, inter, vocab = 2880, 32, 2880, 201088
    out: dict[str, tuple[str, list[int]]] = {
        "model.embed_tokens.weight": ("BF16", [vocab, h]), "lm_head.weight": ("BF16", [vocab, h]),
        "model.norm.weight": ("BF16", [h]),
    }
    for n in range(24):
        p = f"model.layers.{n}."
        out.update({
            p + "self_attn.q_proj.weight": ("BF16", [4096, h]), p + "self_attn.q_proj.bias": ("BF16", [4096]),
            p + "self_attn.k_proj.weight": ("BF16", [512, h]), p + "self_attn.k_proj.bias": ("BF16", [512]),
            p + "self_attn.v_proj.weight": ("BF16", [512, h]), p + "self_attn.v_proj.bias": ("BF16", [512]),
            p + "self_attn.o_proj.weight": ("BF16", [h, 4096]), p + "self_attn.o_proj.bias": ("BF16", [h]),
            p + "self_attn.sinks": ("BF16", [64]),
            p + "mlp.router.weight": ("BF16", [e, h]), p + "mlp.router.bias": ("BF16", [e]),
            p + "mlp.experts.gate_up_proj_blocks": ("U8", [e, 2 * inter, h // 32, 16]),
            p + "mlp.experts.gate_up_proj_scales": ("U8", [e, 2 * inter, h // 32]),
            p + "mlp.experts.gate_up_proj_bias": ("BF16", [e, 2 * inter]),
            p + "mlp.experts.down_proj_blocks": ("U8", [e, h, inter // 32, 16]),
            p + "mlp.experts.down_proj_scales": ("U8", [e, h, inter // 32]),
            p + "mlp.experts.down_proj_bias": ("BF16", [e, h]),
            p + "input_layernorm.weight": ("BF16", [h]), p + "post_attention_layernorm.weight": ("BF16", [h]),
        })
    return out


def make_virtual_20b(path: Path, shards: int = 3) -> Path:
    """config.json + header-only safetensors shards describing openai/gpt-oss-20b (no tensor data)."""
    import math

    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps(GPT_OSS_20B_CONFIG))
    items = sorted(_tensors_20b().items())
    size = {"BF16": 2, "U8": 1}
    for s in range(shards):
        header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
        offset = 0
        for name, (dtype, shape) in items[s::shards]:
            end = offset + math.prod(shape) * size[dtype]
            header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, end]}
            offset = end
        raw = json.dumps(header).encode()
        (path / f"model-{s:05d}-of-{shards:05d}.safetensors").write_bytes(struct.pack("<Q", len(raw)) + raw)
    return path


__all__ = ["demo_model_dir", "load_engine", "make_tiny_model", "make_tiny_mxfp4_model", "make_virtual_20b", "tiny_config"]
