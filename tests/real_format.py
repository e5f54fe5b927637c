"""A tiny gpt-oss checkpoint in the exact real format: MXFP4 experts, vocabulary 201088, and the real o200k_harmony
``tokenizer.json`` built offline from ``gptoss_cli/vocab/o200k_base.tiktoken`` plus the harmony special tokens at
their ids (199998-200018; ids 200019-201087 are embedding padding the tokenizer never produces).

- ``write_o200k_harmony_tokenizer(path)``: the tokenizer files (takes a few seconds: the BPE merges are derived
  from the ranks, as transformers' ``TikTokenConverter`` does).
- ``make_real_format_model(path)``: that tokenizer + a 2-layer, hidden-64 gpt-oss with MXFP4 experts.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tests.harmony_corpus import _NAMED_SPECIALS, _O200K_PATTERN, O200K_FILE

REAL_VOCAB = 201088
LAST_SPECIAL = 200018


def harmony_specials() -> list[str]:
    """The special tokens in id order 199998..200018 (named, else ``<|reserved_N|>``)."""
    by_id = {i: t for t, i in _NAMED_SPECIALS.items()}
    return [by_id.get(i, f"<|reserved_{i}|>") for i in range(199998, LAST_SPECIAL + 1)]


def write_o200k_harmony_tokenizer(path: Path) -> Path:
    from transformers.convert_slow_tokenizer import TikTokenConverter

    path.mkdir(parents=True, exist_ok=True)
    tok = TikTokenConverter(vocab_file=str(O200K_FILE), pattern=_O200K_PATTERN,
                            extra_special_tokens=harmony_specials()).converted()
    assert tok.token_to_id("<|return|>") == 200002 and tok.token_to_id("<|endofprompt|>") == LAST_SPECIAL
    tok.save(str(path / "tokenizer.json"))
    (path / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "PreTrainedTokenizerFast"}))
    return path


def make_real_format_model(path: Path, tokenizer_dir: Path, *, seed: int = 0) -> Path:
    """A tiny MXFP4 gpt-oss (vocab 201088) with the real o200k_harmony tokenizer copied from ``tokenizer_dir``."""
    from tests.model_fixtures import make_tiny_mxfp4_model

    make_tiny_mxfp4_model(path, seed=seed, vocab_size=REAL_VOCAB, eos=(200002, 200012), pad=199999)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copyfile(tokenizer_dir / name, path / name)
    return path


__all__ = ["REAL_VOCAB", "harmony_specials", "make_real_format_model", "write_o200k_harmony_tokenizer"]
