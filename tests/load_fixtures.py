"""Helpers for the load tests: a tiny random GptOssForCausalLM (real architecture: MoE, sinks, sliding window)."""

from __future__ import annotations

import contextlib
from typing import Any, Iterator


def tiny_gpt_oss(vocab_size: int = 1024, seed: int = 0, sliding_window: int = 8) -> Any:
    """A 2-layer GPT-OSS with non-trivial attention sinks, eager attention, in eval mode (CPU, ~0.3 M params)."""
    import torch
    from transformers import GptOssConfig, GptOssForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    torch.manual_seed(seed)
    config = GptOssConfig(
        num_hidden_layers=2, hidden_size=64, intermediate_size=64, head_dim=16, num_attention_heads=4,
        num_key_value_heads=2, num_local_experts=4, num_experts_per_tok=2, vocab_size=vocab_size,
        sliding_window=sliding_window, max_position_embeddings=512,
        rope_parameters={"rope_type": "yarn", "rope_theta": 150000.0, "factor": 4.0,
                         "original_max_position_embeddings": 128, "beta_fast": 32.0, "beta_slow": 1.0,
                         "truncate": False},
    )
    config._attn_implementation = "eager"
    model = GptOssForCausalLM(config).eval()
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.sinks.normal_(0.0, 1.0)
    return model


def reference_greedy(model: Any, prompt: list[int], max_new_tokens: int) -> list[int]:
    """Unbatched greedy decoding with transformers' own ``generate()``."""
    import torch

    with torch.inference_mode():
        ids = torch.tensor([prompt])
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                             do_sample=False, pad_token_id=0, eos_token_id=None)
    return out[0, len(prompt):].tolist()


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Fewer intra-op threads: a tiny model on a shared 2-core box is much faster single-threaded."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
