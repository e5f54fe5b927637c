"""Build (train) the demo model that ships in ``gptoss_cli/demo/``: developers only, never at run time.

``python scripts/build_demo_model.py`` calls :func:`build_shipped`, which writes ``model/`` and ``gptoss.lock.json``
beside this module. The model is ``GptOssForCausalLM`` with the real architecture at toy size (mixture of experts
with a top-k router, attention sinks, alternating sliding-window / full attention layers, YaRN RoPE), safetensors
weights, a byte-level BPE ``tokenizer.json`` that carries the harmony special tokens, ``tokenizer_config.json`` and
``generation_config.json`` (eos = ``<|return|>``, ``<|endoftext|>``, ``<|call|>`` like the real model).

It is trained on synthetic harmony conversations (``corpus.py``) rendered exactly like the server's prompts, with
the loss on the assistant completion only. Greedy decoding then answers in well-formed harmony: ``analysis`` →
``final`` → ``<|return|>``, and ``analysis`` → ``to=functions.NAME`` call with JSON arguments → ``<|call|>`` when
tools are offered and the question needs one. The model knows nothing: its answers are a few canned sentences per
kind of question, and tool arguments carry a plausible but arbitrary value.

Training is deterministic on one machine (seeded RNGs, one thread, deterministic algorithms), but float results
differ between CPUs: that is why the result is shipped (with its SHA-256 in the lock) instead of rebuilt by users
or tests.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from gptoss_cli.demo import DEMO_CURRENT_DATE, DEMO_MAX_MODEL_LEN, DEMO_VERSION, LOCK_NAME, MARKER
from gptoss_cli.demo.corpus import Example, Setup, prompt_fingerprint, render_prompt, sample_example, sample_setup

TRAIN_STEPS = 600
SPECIAL_TOKENS = (
    "<|startoftext|>", "<|endoftext|>", "<|return|>", "<|constrain|>", "<|channel|>", "<|start|>", "<|end|>",
    "<|message|>", "<|call|>",
)
LOCK_CREATED_AT = "2025-08-05T00:00:00Z"  # fixed, so a rebuild with the same result gives the same lock bytes
_VOCAB = 1024
_GROUPS, _PER_GROUP = 2, 8  # a step = 2 setups (shared system+developer prefix) x 8 conversations
_LR, _WARMUP = 5e-3, 20

Progress = Callable[[str], None]


def _noop(_: str) -> None:
    pass


def build_shipped(root: Path, *, seed: int = 0, steps: int = TRAIN_STEPS, progress: Progress | None = None) -> Path:
    """Build the demo model into ``root/model`` and write ``root/gptoss.lock.json``; returns the lock path.

    The build happens in a temporary folder beside ``root/model`` and replaces it only when complete."""
    say = progress or _noop
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".model.", dir=root))
    try:
        started = time.monotonic()
        build_demo_model(tmp, seed=seed, steps=steps, progress=say)
        tmp.chmod(0o755)  # mkdtemp made it private
        lock_text = lock_json(tmp)
        target = root / "model"
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=".model.old.", dir=root))
            os.replace(target, old / "model")
            shutil.rmtree(old, ignore_errors=True)
        os.replace(tmp, target)
        from gptoss_cli.lockfile import atomic_write_text

        atomic_write_text(root / LOCK_NAME, lock_text)
        say(f"demo model built in {time.monotonic() - started:.0f} s")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root / LOCK_NAME


def lock_json(model_dir: Path) -> str:
    """The lock text for the files in ``model_dir`` (every file, hashed here: ``hash_source`` ``local``)."""
    import hashlib

    from gptoss_cli.lockfile import Lock, LockedFile, ModelPin

    files = []
    for path in sorted(p for p in Path(model_dir).iterdir() if p.is_file()):
        data = path.read_bytes()
        files.append(LockedFile(path.name, len(data), hashlib.sha256(data).hexdigest(), "local"))
    pin = ModelPin(source="local", repo_id="gptoss/demo", commit=f"demo-v{DEMO_VERSION}",
                   endpoint="package:gptoss_cli.demo")
    lock = Lock(code=None, model=pin, files=tuple(files), created_at=LOCK_CREATED_AT)
    return json.dumps(lock.to_dict(), indent=2, sort_keys=True) + "\n"


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
        "current_date": DEMO_CURRENT_DATE, "prompt_fingerprint": prompt_fingerprint(DEMO_CURRENT_DATE),
        "note": "tiny gpt-oss demo model built by gptoss; it knows nothing, it only speaks harmony",
    }
    _write_json(out / MARKER, marker)


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


__all__ = ["TRAIN_STEPS", "build_demo_model", "build_shipped", "lock_json", "yarn_rope"]
