"""Build a full-size gpt-oss-20b-shaped checkpoint with random weights, in the real format, without the Hub.

Real tensor names, shapes and dtypes (MXFP4 experts as uint8 blocks + E8M0 scales, everything else bf16), the real
config (24 layers, 32 experts, vocab 201088, YaRN to 131072) and the real o200k_harmony tokenizer built from the
``o200k_base.tiktoken`` that ships in ``gptoss_cli/vocab``: 13.8 GB of real data (random bytes, not sparse
files), written shard by shard a tensor at a time so building it needs little memory.

    python bench/fullsize.py OUT_DIR [--layers 24] [--seed 0]

``--layers`` builds a full-width model with fewer layers (1 layer: ~2.9 GB), for quick memory checks.
Used by ``bench/mxfp4_fits.py`` (CPU box) and ``bench/gpu_check.py`` (one GPU). Needs torch, tokenizers and
transformers (for the tokenizer converter); nothing is downloaded.
"""

from __future__ import annotations

import argparse
import json
import struct
import sys
import time
from pathlib import Path
from typing import Any, Iterator

HIDDEN, INTER, EXPERTS, VOCAB, HEADS, KV_HEADS, HEAD_DIM = 2880, 2880, 32, 201088, 64, 8, 64
SHARD_BYTES = 4_800_000_000
O200K_PATTERN = "|".join([
    r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
    r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
    r"""\p{N}{1,3}""", r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""", r"""\s*[\r\n]+""", r"""\s+(?!\S)""", r"""\s+""",
])
NAMED_SPECIALS = {199998: "<|startoftext|>", 199999: "<|endoftext|>", 200002: "<|return|>", 200003: "<|constrain|>",
                  200005: "<|channel|>", 200006: "<|start|>", 200007: "<|end|>", 200008: "<|message|>",
                  200012: "<|call|>", 200018: "<|endofprompt|>"}


def config(layers: int) -> dict[str, Any]:
    return {
        "architectures": ["GptOssForCausalLM"], "model_type": "gpt_oss", "hidden_size": HIDDEN,
        "intermediate_size": INTER, "num_hidden_layers": layers, "num_attention_heads": HEADS,
        "num_key_value_heads": KV_HEADS, "head_dim": HEAD_DIM, "num_local_experts": EXPERTS,
        "num_experts_per_tok": 4, "experts_per_token": 4, "sliding_window": 128,
        "layer_types": (["sliding_attention", "full_attention"] * layers)[:layers],
        "max_position_embeddings": 131072, "initial_context_length": 4096, "vocab_size": VOCAB,
        "tie_word_embeddings": False, "attention_bias": True, "attention_dropout": 0.0, "hidden_act": "silu",
        "rms_norm_eps": 1e-05, "swiglu_limit": 7.0, "router_aux_loss_coef": 0.9, "output_router_logits": False,
        "rope_theta": 150000, "rope_scaling": {"rope_type": "yarn", "factor": 32.0, "beta_fast": 32.0,
                                               "beta_slow": 1.0, "original_max_position_embeddings": 4096,
                                               "truncate": False},
        "eos_token_id": 200002, "pad_token_id": 199999, "torch_dtype": "bfloat16", "use_cache": True,
        "quantization_config": {"quant_method": "mxfp4", "modules_to_not_convert": [
            "model.layers.*.self_attn", "model.layers.*.mlp.router", "model.embed_tokens", "lm_head"]},
    }


def tensors(layers: int) -> list[tuple[str, str, list[int]]]:
    """(name, dtype, shape) of every tensor, in the order they are written."""
    out = [("model.embed_tokens.weight", "BF16", [VOCAB, HIDDEN])]
    for n in range(layers):
        p = f"model.layers.{n}."
        out += [
            (p + "input_layernorm.weight", "BF16", [HIDDEN]), (p + "post_attention_layernorm.weight", "BF16", [HIDDEN]),
            (p + "self_attn.q_proj.weight", "BF16", [HEADS * HEAD_DIM, HIDDEN]),
            (p + "self_attn.q_proj.bias", "BF16", [HEADS * HEAD_DIM]),
            (p + "self_attn.k_proj.weight", "BF16", [KV_HEADS * HEAD_DIM, HIDDEN]),
            (p + "self_attn.k_proj.bias", "BF16", [KV_HEADS * HEAD_DIM]),
            (p + "self_attn.v_proj.weight", "BF16", [KV_HEADS * HEAD_DIM, HIDDEN]),
            (p + "self_attn.v_proj.bias", "BF16", [KV_HEADS * HEAD_DIM]),
            (p + "self_attn.o_proj.weight", "BF16", [HIDDEN, HEADS * HEAD_DIM]),
            (p + "self_attn.o_proj.bias", "BF16", [HIDDEN]), (p + "self_attn.sinks", "BF16", [HEADS]),
            (p + "mlp.router.weight", "BF16", [EXPERTS, HIDDEN]), (p + "mlp.router.bias", "BF16", [EXPERTS]),
            (p + "mlp.experts.gate_up_proj_blocks", "U8", [EXPERTS, 2 * INTER, HIDDEN // 32, 16]),
            (p + "mlp.experts.gate_up_proj_scales", "U8", [EXPERTS, 2 * INTER, HIDDEN // 32]),
            (p + "mlp.experts.gate_up_proj_bias", "BF16", [EXPERTS, 2 * INTER]),
            (p + "mlp.experts.down_proj_blocks", "U8", [EXPERTS, HIDDEN, INTER // 32, 16]),
            (p + "mlp.experts.down_proj_scales", "U8", [EXPERTS, HIDDEN, INTER // 32]),
            (p + "mlp.experts.down_proj_bias", "BF16", [EXPERTS, HIDDEN]),
        ]
    return out + [("model.norm.weight", "BF16", [HIDDEN]), ("lm_head.weight", "BF16", [VOCAB, HIDDEN])]


def _nbytes(dtype: str, shape: list[int]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n * (2 if dtype == "BF16" else 1)


def _shards(items: list[tuple[str, str, list[int]]]) -> list[list[tuple[str, str, list[int]]]]:
    shards: list[list[tuple[str, str, list[int]]]] = [[]]
    size = 0
    for item in items:
        if shards[-1] and size + _nbytes(item[1], item[2]) > SHARD_BYTES:
            shards.append([])
            size = 0
        shards[-1].append(item)
        size += _nbytes(item[1], item[2])
    return shards


def _data(name: str, dtype: str, shape: list[int], gen: Any) -> Iterator[bytes]:
    """Random bytes for one tensor, in pieces of at most 256 MB: norms 1, biases and sinks small, weights
    N(0, 0.02), FP4 blocks uniform, E8M0 scales 2^-9..2^-4 (sane expert weights)."""
    import torch

    total = _nbytes(dtype, shape)
    step = 256 * 1024 * 1024
    for start in range(0, total, step):
        count = min(step, total - start)
        if dtype == "U8":
            low, high = (118, 124) if name.endswith("_scales") else (0, 256)
            chunk = torch.randint(low, high, (count,), generator=gen, dtype=torch.uint8)
        elif name.endswith("layernorm.weight") or name == "model.norm.weight":
            chunk = torch.ones(count // 2, dtype=torch.bfloat16)
        else:
            std = 0.002 if name.endswith(("bias", "sinks")) else 0.02
            chunk = (torch.randn(count // 2, generator=gen) * std).to(torch.bfloat16)
        yield chunk.view(torch.uint8).numpy().tobytes()


def write_shard(path: Path, items: list[tuple[str, str, list[int]]], gen: Any) -> int:
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, dtype, shape in items:
        end = offset + _nbytes(dtype, shape)
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, end]}
        offset = end
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    tmp = path.with_suffix(".partial")
    with open(tmp, "wb") as fh:
        fh.write(struct.pack("<Q", len(raw)) + raw)
        for name, dtype, shape in items:
            for piece in _data(name, dtype, shape, gen):
                fh.write(piece)
    tmp.replace(path)
    return offset


def write_tokenizer(out: Path) -> None:
    from transformers.convert_slow_tokenizer import TikTokenConverter

    from gptoss_cli.vocab import encodings_base

    specials = [NAMED_SPECIALS.get(i, f"<|reserved_{i}|>") for i in range(199998, 200019)]
    tok = TikTokenConverter(vocab_file=str(encodings_base() / "o200k_base.tiktoken"), pattern=O200K_PATTERN,
                            extra_special_tokens=specials).converted()
    tok.save(str(out / "tokenizer.json"))
    (out / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "PreTrainedTokenizerFast"}))


def build(out: Path, layers: int = 24, seed: int = 0, log: Any = print) -> Path:
    """Write the checkpoint into ``out`` (skipped when ``out`` already holds a complete one of that shape)."""
    import torch

    out.mkdir(parents=True, exist_ok=True)
    shards = _shards(tensors(layers))
    names = [f"model-{i:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))]
    done = out / ".complete"
    if done.is_file() and done.read_text() == f"{layers} {seed}":
        log(f"reusing the checkpoint in {out}")
        return out
    started = time.perf_counter()
    gen = torch.Generator().manual_seed(seed)
    weight_map, total = {}, 0
    for name, items in zip(names, shards):
        total += write_shard(out / name, items, gen)
        weight_map.update({t[0]: name for t in items})
        log(f"  wrote {name} ({total / 1e9:.2f} GB so far, {time.perf_counter() - started:.0f} s)")
    (out / "model.safetensors.index.json").write_text(json.dumps(
        {"metadata": {"total_size": total}, "weight_map": weight_map}, indent=1))
    (out / "config.json").write_text(json.dumps(config(layers), indent=2))
    (out / "generation_config.json").write_text(json.dumps(
        {"bos_token_id": 199998, "eos_token_id": [200002, 199999, 200012], "pad_token_id": 199999}))
    write_tokenizer(out)
    done.write_text(f"{layers} {seed}")
    log(f"built {total / 1e9:.2f} GB in {out} in {time.perf_counter() - started:.0f} s")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--layers", type=int, default=24)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    build(args.out, args.layers, args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
