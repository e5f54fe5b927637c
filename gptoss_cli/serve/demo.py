"""The embedded demo model: a tiny gpt-oss, built and trained locally in well under a minute, no downloads.

``ensure_demo_model(home)`` returns a model folder that ``TransformersEngine`` loads like the real one:
``GptOssForCausalLM`` with the real architecture at toy size (mixture of experts with a top-k router, attention
sinks, alternating sliding-window / full attention layers, YaRN RoPE), safetensors weights, a byte-level BPE
``tokenizer.json`` that carries the harmony special tokens, ``tokenizer_config.json`` and ``generation_config.json``
(eos = ``<|return|>``, ``<|endoftext|>``, ``<|call|>`` like the real model).

It is trained for a few hundred steps on synthetic harmony conversations (``demo_corpus.py``) rendered exactly like
the server's prompts, with the loss on the assistant completion only. Greedy decoding then answers in well-formed
harmony: ``analysis`` → ``final`` → ``<|return|>``, and ``analysis`` → ``to=functions.NAME`` call with JSON
arguments → ``<|call|>`` when tools are offered and the question needs one. The model knows nothing: its answers are a few
canned sentences per kind of question, and it does not copy words from the question (too hard to learn in seconds),
so tool arguments carry a plausible but arbitrary value.

Builds are deterministic (same seed, same software and CPU → byte-identical files: seeded RNGs, one thread,
deterministic algorithms) and cached under ``home/demo/<DEMO_VERSION>-seed<seed>/``; a build happens in a temporary
folder that is renamed into place when complete. The marker file records a fingerprint of the rendered prompts, so
a change in the server's harmony renderer triggers a rebuild.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from gptoss_cli.serve.demo_corpus import Example, Setup, render_prompt, sample_example, sample_setup

DEMO_VERSION = "1"
DEMO_CURRENT_DATE = "2025-08-05"  # the server passes this date to render_chat for --demo (training used it)
DEMO_MAX_MODEL_LEN = 4096
MARKER = "gptoss-demo.json"
TRAIN_STEPS = 200
SPECIAL_TOKENS = (
    "<|startoftext|>", "<|endoftext|>", "<|return|>", "<|constrain|>", "<|channel|>", "<|start|>", "<|end|>",
    "<|message|>", "<|call|>",
)
_VOCAB = 1024
_GROUPS, _PER_GROUP = 2, 8  # a step = 2 setups (shared system+developer prefix) x 8 conversations
_LR, _WARMUP = 5e-3, 20

Progress = Callable[[str], None]
_BUILT_IN_PROCESS: dict[tuple[int, str], Path] = {}  # (seed, fingerprint) → folder built earlier in this process


def _noop(_: str) -> None:
    pass


def demo_dir(home: Path, seed: int = 0) -> Path:
    return Path(home) / "demo" / f"{DEMO_VERSION}-seed{seed}"


def prompt_fingerprint() -> str:
    """Hash of a few rendered training prompts: changes when the server's harmony renderer changes."""
    rng = random.Random(1234)
    text = "".join(render_prompt(sample_example(rng, sample_setup(rng)), DEMO_CURRENT_DATE) for _ in range(8))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def ensure_demo_model(home: Path, *, seed: int = 0, progress: Progress | None = None) -> Path:
    """Return the demo model folder for ``seed``, building it (once, no downloads) when missing or stale."""
    say = progress or _noop
    target = demo_dir(home, seed)
    fingerprint = prompt_fingerprint()
    if _marker_matches(target, fingerprint):
        _BUILT_IN_PROCESS.setdefault((seed, fingerprint), target)
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        earlier = _BUILT_IN_PROCESS.get((seed, fingerprint))
        if earlier is not None and _marker_matches(earlier, fingerprint):
            # builds are deterministic: a copy of this process's earlier build is the same model
            shutil.copytree(earlier, tmp, dirs_exist_ok=True)
        else:
            say(f"building the demo model in {target} (first run only, about 30-60 s on a CPU)")
            started = time.monotonic()
            build_demo_model(tmp, seed=seed, progress=say)
            say(f"demo model ready after {time.monotonic() - started:.0f} s")
        tmp.chmod(0o755)  # mkdtemp made it private
        _install(tmp, target, fingerprint)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    _BUILT_IN_PROCESS[(seed, fingerprint)] = target
    return target


def _marker_matches(target: Path, fingerprint: str) -> bool:
    try:
        marker = json.loads((target / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return marker.get("prompt_fingerprint") == fingerprint and marker.get("version") == DEMO_VERSION


def _install(tmp: Path, target: Path, fingerprint: str) -> None:
    """Move a finished build into place; a concurrent builder that got there first wins."""
    if _marker_matches(target, fingerprint):
        return
    if target.exists():  # stale (older renderer) or incomplete: move it aside, then delete it
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old.", dir=target.parent))
        os.replace(target, old / "model")
        shutil.rmtree(old, ignore_errors=True)
    try:
        os.replace(tmp, target)
    except OSError:
        if not _marker_matches(target, fingerprint):
            raise


def build_demo_model(out: Path, *, seed: int = 0, steps: int = TRAIN_STEPS, progress: Progress | None = None) -> None:
    """Build, train and save the demo model into the (empty) folder ``out``."""
    import torch

    say = progress or _noop
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    try:
        torch.manual_seed(seed)
        rng = random.Random(seed)
        tokenizer = _train_tokenizer(rng)
        model = _new_model(tokenizer)
        loss = _train(model, tokenizer, rng, steps, say)
        _save(out, model, tokenizer, seed=seed, steps=steps, loss=loss)
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)


def _train_tokenizer(rng: random.Random) -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    texts = []
    for _ in range(100):
        setup = sample_setup(rng)
        texts += [_render(ex) + ex.completion for ex in (sample_example(rng, setup) for _ in range(4))]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=_VOCAB, special_tokens=list(SPECIAL_TOKENS), show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(texts, trainer)
    return tok


def _render(example: Example) -> str:
    return render_prompt(example, DEMO_CURRENT_DATE)


def _new_model(tokenizer: Any) -> Any:
    from transformers import GenerationConfig, GptOssConfig, GptOssForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    ids = {t: tokenizer.token_to_id(t) for t in SPECIAL_TOKENS}
    vocab = -(-tokenizer.get_vocab_size() // 64) * 64  # padded like the real vocabulary
    config = GptOssConfig(
        vocab_size=vocab, hidden_size=64, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, head_dim=16, num_local_experts=4, num_experts_per_tok=2, sliding_window=64,
        layer_types=["sliding_attention", "full_attention"], max_position_embeddings=DEMO_MAX_MODEL_LEN,
        rope_parameters=yarn_rope(DEMO_MAX_MODEL_LEN),
        tie_word_embeddings=False, pad_token_id=ids["<|endoftext|>"], bos_token_id=ids["<|startoftext|>"],
        eos_token_id=ids["<|return|>"], architectures=["GptOssForCausalLM"],
    )
    config._attn_implementation = "eager"
    model = GptOssForCausalLM(config)
    model.generation_config = GenerationConfig(
        bos_token_id=ids["<|startoftext|>"], pad_token_id=ids["<|endoftext|>"],
        eos_token_id=[ids["<|return|>"], ids["<|endoftext|>"], ids["<|call|>"]], do_sample=True,
    )
    return model


def yarn_rope(context: int) -> dict[str, Any]:
    """gpt-oss RoPE (YaRN, factor 32, theta 150000) scaled so that the extended context is ``context``."""
    return {"rope_type": "yarn", "factor": 32.0, "beta_fast": 32.0, "beta_slow": 1.0, "truncate": False,
            "original_max_position_embeddings": max(context // 32, 1), "rope_theta": 150000.0}


def _batch(tokenizer: Any, setup: Setup, examples: list[Example], pad: int) -> tuple[Any, ...]:
    """(shared prefix ids [1, P], suffix ids [B, T], attention mask [B, P+T], targets [B, T] with -100 = no loss)."""
    import torch

    prompts = [_render(ex) for ex in examples]
    head = prompts[0][: prompts[0].index("<|start|>user")]  # system + developer: the same for the whole group
    prefix = tokenizer.encode(head).ids
    rows = []
    for prompt, ex in zip(prompts, examples):
        ids = tokenizer.encode(prompt).ids
        assert ids[: len(prefix)] == prefix, "prompts of one setup must share the system/developer prefix"
        rows.append((ids[len(prefix):], tokenizer.encode(ex.completion).ids))
    width = max(len(p) + len(c) for p, c in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), len(prefix) + width), dtype=torch.long)
    mask[:, : len(prefix)] = 1
    targets = torch.full((len(rows), width), -100, dtype=torch.long)
    for r, (p, c) in enumerate(rows):
        ids[r, : len(p) + len(c)] = torch.tensor(p + c)
        mask[r, len(prefix) : len(prefix) + len(p) + len(c)] = 1
        targets[r, len(p) : len(p) + len(c)] = torch.tensor(c)
    return torch.tensor([prefix]), ids, mask, targets


def _group_loss(model: Any, prefix: Any, ids: Any, mask: Any, targets: Any) -> Any:
    """Cross-entropy on completion tokens; the shared prefix runs once and its KV cache is repeated per row."""
    import torch
    from transformers import DynamicCache

    cache = DynamicCache(config=model.config)
    model.model(input_ids=prefix, cache=cache, use_cache=True)
    cache.batch_repeat_interleave(ids.shape[0])
    hidden = model.model(input_ids=ids, attention_mask=mask, cache=cache, use_cache=True).last_hidden_state
    # hidden[:, i] predicts ids[:, i + 1]; the first suffix token is prompt text, never a target
    wanted = targets[:, 1:]
    keep = wanted != -100
    logits = model.lm_head(hidden[:, :-1][keep])
    return torch.nn.functional.cross_entropy(logits, wanted[keep])


def _train(model: Any, tokenizer: Any, rng: random.Random, steps: int, say: Progress) -> float:
    import torch

    pad = tokenizer.token_to_id("<|endoftext|>")
    opt = torch.optim.AdamW(model.parameters(), lr=_LR, betas=(0.9, 0.95), weight_decay=0.0)
    model.train()
    loss_value = float("nan")
    started = time.monotonic()
    for step in range(steps):
        lr = _LR * min(1.0, (step + 1) / _WARMUP) * min(1.0, 2 * (steps - step) / steps)  # warm up, then decay
        for group in opt.param_groups:
            group["lr"] = lr
        loss = 0
        for _ in range(_GROUPS):
            setup = sample_setup(rng)
            examples = [sample_example(rng, setup) for _ in range(_PER_GROUP)]
            loss = loss + _group_loss(model, *_batch(tokenizer, setup, examples, pad)) / _GROUPS
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        loss_value = float(loss.detach())
        if (step + 1) % 50 == 0 or step + 1 == steps:
            say(f"demo model: step {step + 1}/{steps}, loss {loss_value:.3f}, {time.monotonic() - started:.0f} s")
    model.eval()
    return loss_value


def _save(out: Path, model: Any, tokenizer: Any, *, seed: int, steps: int, loss: float) -> None:
    from transformers.utils import logging as hf_logging

    out.mkdir(parents=True, exist_ok=True)
    hf_logging.disable_progress_bar()
    model.save_pretrained(str(out), safe_serialization=True)
    tokenizer.save(str(out / "tokenizer.json"))
    special = {"bos_token": "<|startoftext|>", "eos_token": "<|return|>", "pad_token": "<|endoftext|>"}
    tokenizer_config = {
        "tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": DEMO_MAX_MODEL_LEN,
        "clean_up_tokenization_spaces": False, **special,
    }
    _write_json(out / "tokenizer_config.json", tokenizer_config)
    _write_json(out / "special_tokens_map.json", special)
    marker = {
        "version": DEMO_VERSION, "seed": seed, "train_steps": steps, "final_loss": round(loss, 4),
        "current_date": DEMO_CURRENT_DATE, "prompt_fingerprint": prompt_fingerprint(),
        "note": "tiny gpt-oss demo model built by gptoss; it knows nothing, it only speaks harmony",
    }
    _write_json(out / MARKER, marker)


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


__all__ = ["DEMO_CURRENT_DATE", "DEMO_MAX_MODEL_LEN", "DEMO_VERSION", "build_demo_model", "ensure_demo_model"]
