"""Packed MXFP4 experts (serve/engines/transformers/mxfp4.py) on a tiny checkpoint in the exact real format: MXFP4
experts, vocabulary 201088, the real o200k_harmony tokenizer. Packed and dequantised agree — same logits within
bf16 tolerance, identical greedy tokens, alone and batched — and the load plan picks the path and context truly."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from gptoss_cli.errors import CouldNotRun, UsageError  # noqa: E402
from gptoss_cli.serve.engines.interface import SamplingParams  # noqa: E402
from gptoss_cli.serve.engines.transformers import mxfp4 as packed  # noqa: E402
from gptoss_cli.serve.engines.transformers.batching import BatchingEngine  # noqa: E402
from gptoss_cli.serve.engines.transformers.engine import TransformersEngine  # noqa: E402
from gptoss_cli.serve.engines.transformers.memory import GIB, estimate_memory, weight_bytes  # noqa: E402
from gptoss_cli.serve.engines.transformers.plan import (  # noqa: E402
    NativeStatus,
    kernel_cached,
    native_status,
    plan_load,
)
from tests.harmony_corpus import o200k_harmony  # noqa: E402
from tests.model_fixtures import load_engine, make_virtual_20b  # noqa: E402
from tests.real_format import REAL_VOCAB, make_real_format_model, write_o200k_harmony_tokenizer  # noqa: E402

pytestmark = pytest.mark.timeout(300)
PROMPTS = [
    "<|start|>user<|message|>What is the capital of France?<|end|><|start|>assistant",
    "<|start|>system<|message|>Reasoning: low<|end|><|start|>user<|message|>Write a haiku about rain, "
    "then explain it in two sentences.<|end|><|start|>assistant",
    "<|start|>user<|message|>2+2=?<|end|><|start|>assistant<|channel|>analysis<|message|>",
]
GREEDY = SamplingParams(max_tokens=12, temperature=0.0, stop_token_ids=(-1,))


@pytest.fixture(scope="module")
def real_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tokenizer = write_o200k_harmony_tokenizer(tmp_path_factory.mktemp("o200k"))
    return make_real_format_model(tmp_path_factory.mktemp("real") / "model", tokenizer)


def _engine(folder: Path, mode: str, dtype: str = "bfloat16") -> TransformersEngine:
    return load_engine(TransformersEngine(folder, device="cpu", dtype=dtype, mxfp4=mode))


@pytest.fixture(scope="module")
def engines(real_dir: Path) -> Any:
    loaded = {mode: _engine(real_dir, mode) for mode in ("packed", "dequantise")}
    yield loaded
    for eng in loaded.values():
        eng.close()


def collect(engine: Any, prompt: list[int], params: SamplingParams) -> list[int]:
    async def go() -> list[int]:
        return [t async for t in engine.generate(prompt, params)]

    return asyncio.run(asyncio.wait_for(go(), 120))


def test_the_checkpoint_is_in_the_real_format(real_dir: Path, engines: Any) -> None:
    from gptoss_cli.serve.engines.transformers.memory import read_safetensors_header

    header = read_safetensors_header(real_dir / "model.safetensors")
    assert header["model.layers.0.mlp.experts.gate_up_proj_blocks"]["dtype"] == "U8"
    assert header["model.embed_tokens.weight"]["shape"][0] == REAL_VOCAB
    tok = engines["packed"].tokenizer
    assert tok.encode(PROMPTS[1]) == o200k_harmony().encode(PROMPTS[1])  # the real o200k_harmony ids
    assert tok.token_id("<|return|>") == 200002 and tok.token_id("<|call|>") == 200012
    experts = engines["packed"].model.model.layers[0].mlp.experts
    assert isinstance(experts, packed.PackedExperts) and experts.gate_up_proj_blocks.dtype == torch.uint8
    assert engines["packed"].mxfp4 == "packed" and engines["dequantise"].mxfp4 == "dequantise"
    assert "MXFP4 packed" in engines["packed"].description


def _logits(engine: Any, ids: list[list[int]]) -> Any:
    width = max(len(i) for i in ids)
    batch = torch.tensor([i + [199999] * (width - len(i)) for i in ids])
    mask = torch.tensor([[1] * len(i) + [0] * (width - len(i)) for i in ids])
    with torch.inference_mode():
        return engine.model(input_ids=batch, attention_mask=mask).logits.float()


def test_packed_and_dequantised_logits_agree_alone_and_batched(engines: Any) -> None:
    ids = [o200k_harmony().encode(p) for p in PROMPTS]
    for batch in ([ids[0]], ids):
        a, b = _logits(engines["packed"], batch), _logits(engines["dequantise"], batch)
        for row, prompt in enumerate(batch):
            x, y = a[row, : len(prompt)], b[row, : len(prompt)]
            assert torch.allclose(x, y, atol=2e-2, rtol=2e-2), (x - y).abs().max()
            assert torch.equal(x.argmax(-1), y.argmax(-1))


def test_packed_and_dequantised_greedy_tokens_are_identical(engines: Any) -> None:
    for prompt in PROMPTS:
        ids = o200k_harmony().encode(prompt)
        assert collect(engines["packed"], ids, GREEDY) == collect(engines["dequantise"], ids, GREEDY)


def test_packed_decode_steps_equal_transformers_generate(engines: Any) -> None:
    """The fast decode step calls the packed experts module; its greedy tokens are transformers' own."""
    from gptoss_cli.serve.engines.transformers.decode_step import decode_step_for

    model = engines["packed"].model
    assert decode_step_for(model) is not None
    ids = o200k_harmony().encode(PROMPTS[0])
    with torch.inference_mode():
        ref = model.generate(torch.tensor([ids]), max_new_tokens=GREEDY.max_tokens, do_sample=False,
                             eos_token_id=None, pad_token_id=199999)[0, len(ids):].tolist()
    ours = collect(engines["packed"], ids, GREEDY)
    assert ours == ref[:len(ours)] and ours


def test_packed_greedy_tokens_batched_equal_alone(real_dir: Path, engines: Any) -> None:
    ids = [o200k_harmony().encode(p) for p in PROMPTS]
    alone = [collect(engines["dequantise"], i, GREEDY) for i in ids]
    eng = BatchingEngine.wrap(TransformersEngine(real_dir, device="cpu", dtype="bfloat16", mxfp4="packed"),
                              max_batch=3)
    load_engine(eng)
    try:
        async def main() -> list[list[int]]:
            async def one(p: list[int]) -> list[int]:
                return [t async for t in eng.generate(p, GREEDY)]
            return list(await asyncio.gather(*(one(i) for i in ids)))

        assert asyncio.run(asyncio.wait_for(main(), 120)) == alone
    finally:
        eng.close()


def test_chunked_dequantisation_changes_nothing(engines: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    ids = [o200k_harmony().encode(PROMPTS[1])]
    whole = _logits(engines["packed"], ids)
    monkeypatch.setattr(packed, "CHUNK_ROWS", 24)  # 128 gate_up rows in 6 chunks, 64 down rows in 3
    assert torch.equal(_logits(engines["packed"], ids), whole)


def test_dequantize_matches_transformers_exactly() -> None:
    from transformers.integrations.mxfp4 import _convert_moe_packed_tensors

    gen = torch.Generator().manual_seed(1)
    blocks = torch.randint(0, 256, (3, 40, 4, 16), generator=gen, dtype=torch.uint8)
    scales = torch.randint(100, 140, (3, 40, 4), generator=gen, dtype=torch.uint8)
    for dtype in (torch.bfloat16, torch.float32):
        ref = _convert_moe_packed_tensors(blocks, scales, dtype=dtype)  # [E, cols, rows]
        ours = torch.stack([packed.dequantize(blocks[e], scales[e], dtype) for e in range(3)])
        assert torch.equal(ours.transpose(1, 2), ref)


def test_packed_float32_matches_dequantised_float32_closely(real_dir: Path) -> None:
    ids = [o200k_harmony().encode(PROMPTS[0])]
    a, b = _engine(real_dir, "packed", "float32"), _engine(real_dir, "dequantise", "float32")
    try:
        assert torch.allclose(_logits(a, ids), _logits(b, ids), atol=1e-4, rtol=1e-4)
    finally:
        a.close()
        b.close()


# -- the load plan: path, memory, context ---------------------------------------------------------------------------


def test_packed_gpt_oss_20b_needs_the_stored_size(tmp_path: Path) -> None:
    folder = make_virtual_20b(tmp_path / "20b")
    weights = weight_bytes(folder, "bfloat16", mxfp4="packed")
    assert 12.6 * GIB < weights < 13.0 * GIB  # MXFP4 experts as stored + 1.8 B other parameters in bf16
    est = estimate_memory(folder, "cpu", "bfloat16", max_model_len=8192, mxfp4="packed", available=24 * GIB)
    assert est.fits and est.needed_bytes < 16 * GIB and "MXFP4 experts packed" in est.detail


def test_auto_on_a_24_gib_cpu_box_serves_gpt_oss_20b_packed_with_a_fitted_context(tmp_path: Path) -> None:
    folder = make_virtual_20b(tmp_path / "20b")
    plan = plan_load(folder, "cpu", "auto", max_model_len=None, available=22 * GIB)
    assert plan.mxfp4 == "packed" and plan.dtype == "bfloat16"
    assert 8192 <= plan.max_model_len < 131072 and plan.max_model_len % 1024 == 0
    assert "fits in 22.0 GiB available on cpu" in plan.context_reason
    assert not estimate_memory(folder, "cpu", "bfloat16", max_model_len=plan.max_model_len + 1024,
                               mxfp4="packed", available=22 * GIB).fits
    assert plan.native == NativeStatus(False, "native MXFP4 kernels need a CUDA device")


def test_an_explicit_context_that_does_not_fit_is_refused(tmp_path: Path) -> None:
    folder = make_virtual_20b(tmp_path / "20b")
    with pytest.raises(CouldNotRun, match=r"needs about .*\(MXFP4 experts packed"):
        plan_load(folder, "cpu", "auto", max_model_len=131072, available=22 * GIB)
    with pytest.raises(CouldNotRun, match="needs about"):
        plan_load(folder, "cpu", "auto", max_model_len=None, available=8 * GIB)  # not even 1024 tokens


def test_auto_dequantises_when_that_fits_and_modes_are_honoured(real_dir: Path) -> None:
    assert plan_load(real_dir, "cpu", "auto", max_model_len=None).mxfp4 == "dequantise"
    assert plan_load(real_dir, "cpu", "auto", max_model_len=None, mxfp4="packed").mxfp4 == "packed"
    with pytest.raises(CouldNotRun, match="--mxfp4 native cannot run here: native MXFP4 kernels need a CUDA"):
        plan_load(real_dir, "cpu", "auto", max_model_len=None, mxfp4="native")
    with pytest.raises(UsageError, match="--mxfp4 must be one of"):
        plan_load(real_dir, "cpu", "auto", max_model_len=None, mxfp4="fast")


def test_the_kernel_counts_as_present_only_when_kernels_can_load_it_offline(tmp_path: Path) -> None:
    repo = tmp_path / "models--kernels-community--gpt-oss-triton-kernels"
    assert not kernel_cached(tmp_path)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "v1").write_text("abc123")
    assert not kernel_cached(tmp_path)  # a ref without its snapshot's build variants
    (repo / "snapshots" / "abc123" / "build").mkdir(parents=True)
    assert kernel_cached(tmp_path)
    assert kernel_cached(tmp_path / "empty", "kernels-community/gpt-oss-triton-kernels=/opt/k")
    assert native_status("cpu", tmp_path).reason == "native MXFP4 kernels need a CUDA device"


def test_ready_reports_the_path_the_experts_really_took(real_dir: Path) -> None:
    from gptoss_cli.serve.openai.app import create_app
    from gptoss_cli.serve.settings import ServeSettings
    from tests.serve_fixtures import ready_client

    settings = ServeSettings(current_date="2026-11-28", mxfp4="packed", max_concurrency=1)
    engine = TransformersEngine(real_dir, device="cpu", mxfp4=settings.mxfp4)
    with ready_client(create_app(settings, engine)) as client:
        body = client.get("/ready").json()
        assert body["mxfp4"] == "packed" and body["max_model_len"] == 1024
        reply = client.post("/v1/chat/completions", json={
            "model": "gpt-oss-20b", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4,
            "temperature": 0}).json()
        assert reply["usage"]["completion_tokens"] == 4
    assert engine.dtype == "bfloat16"  # auto + packed: everything but the experts in bf16, on the CPU too
