"""TransformersEngine on real (tiny) models: loading rules, generation, sampling, stop tokens, cancellation, memory."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

import pytest

from gptoss_cli.errors import CouldNotRun
from gptoss_cli.serve.engines.interface import SamplingParams, Tokenizer
from gptoss_cli.serve.engines.transformers.memory import GIB, check_memory, estimate_memory, weight_bytes
from gptoss_cli.serve.engines.transformers.engine import TransformersEngine
from gptoss_cli.serve.engines.transformers.decode_step import decode_step_for
from tests.model_fixtures import load_engine, make_tiny_model, make_tiny_mxfp4_model, make_virtual_20b

PROMPT = "<|start|>user<|message|>hello there<|end|><|start|>assistant"


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="module")
def engine(tiny_dir: Path) -> Any:
    eng = TransformersEngine(tiny_dir, device="cpu", dtype="auto")
    load_engine(eng)
    yield eng
    eng.close()


def collect(engine: Any, prompt: list[int], params: SamplingParams, timeout: float = 60) -> list[int]:
    async def go() -> list[int]:
        return [t async for t in engine.generate(prompt, params)]

    return asyncio.run(asyncio.wait_for(go(), timeout))


def test_loads_random_tiny_model(engine: Any, tiny_dir: Path) -> None:
    assert engine.description == "GptOssForCausalLM on cpu (float32), context 1024 (the model's limit)"
    assert engine.max_model_len == 1024
    assert engine.model is not None and next(engine.model.parameters()).dtype.is_floating_point
    assert isinstance(engine.tokenizer, Tokenizer)
    assert engine.default_stop_token_ids[:2] == (engine.tokenizer.token_id("<|return|>"),
                                                 engine.tokenizer.token_id("<|call|>"))


def test_tokenizer_adapter_handles_special_token_text(engine: Any) -> None:
    tok = engine.tokenizer
    ids = tok.encode(PROMPT)
    start = tok.token_id("<|start|>")
    assert start is not None and ids[0] == start and ids.count(start) == 2 and tok.token_id("<|message|>") in ids
    assert tok.decode(ids) == PROMPT  # specials come back as their text
    assert tok.decode(tok.encode("héllo ✓")) == "héllo ✓"
    assert tok.token_id("<|nope|>") is None
    long = PROMPT * 2000  # past the length tokenised without holding the GIL: the same ids
    assert len(long) > 64 * 1024 and tok.encode(long) == ids * 2000


def test_greedy_matches_transformers_generate_across_prefill_chunks(engine: Any) -> None:
    """Our prefill (chunked at 256) + step-by-step decode equals model.generate on a prompt longer than a chunk."""
    import torch

    prompt = engine.tokenizer.encode("<|start|>user<|message|>" + "lorem ipsum dolor sit amet " * 12 + "<|end|>")
    assert len(prompt) > 300  # > PREFILL_CHUNK and far beyond the sliding window of 8
    assert decode_step_for(engine.model) is not None  # the decode steps compared here are the fast ones
    ours = collect(engine, prompt, SamplingParams(max_tokens=12, temperature=0.0, stop_token_ids=(-1,)))
    with torch.no_grad():
        ref = engine.model.generate(torch.tensor([prompt]), max_new_tokens=12, do_sample=False,
                                    eos_token_id=None, pad_token_id=0)[0, len(prompt):].tolist()
    assert ours == ref


def test_decode_step_transformers_keeps_the_transformers_forward_with_the_same_tokens(tiny_dir: Path,
                                                                                     engine: Any) -> None:
    slow = TransformersEngine(tiny_dir, device="cpu", dtype="auto", decode_step="transformers")
    load_engine(slow)
    try:
        assert decode_step_for(slow.model) is None and decode_step_for(engine.model) is not None
        prompt = engine.tokenizer.encode(PROMPT)
        params = SamplingParams(max_tokens=20, temperature=0.0, stop_token_ids=(-1,))
        assert collect(slow, prompt, params) == collect(engine, prompt, params)
    finally:
        slow.close()


def test_max_tokens_and_stop_tokens(engine: Any) -> None:
    prompt = engine.tokenizer.encode(PROMPT)
    free = collect(engine, prompt, SamplingParams(max_tokens=10, temperature=0.0, stop_token_ids=(-1,)))
    assert len(free) == 10
    cut = next(i for i, t in enumerate(free) if t not in free[:i] and i > 0)
    stopped = collect(engine, prompt, SamplingParams(max_tokens=10, temperature=0.0, stop_token_ids=(free[cut],)))
    assert stopped == free[: cut + 1]  # the stop token itself is yielded, nothing after it


def test_sampling_seed_top_p_and_penalties(engine: Any) -> None:
    prompt = engine.tokenizer.encode(PROMPT)
    sample = SamplingParams(max_tokens=16, temperature=1.5, seed=7, stop_token_ids=(-1,))
    first, second = collect(engine, prompt, sample), collect(engine, prompt, sample)
    assert first == second
    others = {tuple(collect(engine, prompt, SamplingParams(max_tokens=16, temperature=1.5, seed=s,
                                                           stop_token_ids=(-1,)))) for s in (1, 2, 3)}
    assert len(others | {tuple(first)}) > 1
    greedy = collect(engine, prompt, SamplingParams(max_tokens=16, temperature=0.0, stop_token_ids=(-1,)))
    narrow = collect(engine, prompt, SamplingParams(max_tokens=16, temperature=1.0, top_p=1e-6, seed=3,
                                                    stop_token_ids=(-1,)))
    assert narrow == greedy  # top_p that keeps one token is greedy
    distinct = collect(engine, prompt, SamplingParams(max_tokens=16, temperature=0.0, presence_penalty=100.0,
                                                      stop_token_ids=(-1,)))
    assert len(set(distinct)) == len(distinct)
    counted = collect(engine, prompt, SamplingParams(max_tokens=16, temperature=0.0, frequency_penalty=100.0,
                                                     stop_token_ids=(-1,)))
    assert len(set(counted)) == len(counted)


def test_context_limits(tiny_dir: Path) -> None:
    eng = TransformersEngine(tiny_dir, device="cpu", max_model_len=40)
    load_engine(eng)
    try:
        assert eng.max_model_len == 40
        prompt = eng.tokenizer.encode(PROMPT)
        out = collect(eng, prompt, SamplingParams(max_tokens=100, temperature=0.0, stop_token_ids=(-1,)))
        assert len(prompt) + len(out) == 40  # generation stops at the context length
        with pytest.raises(ValueError, match="context length is 40"):
            collect(eng, prompt * 2, SamplingParams(max_tokens=1))
    finally:
        eng.close()
    big = TransformersEngine(tiny_dir, device="cpu", max_model_len=10**6)
    load_engine(big)
    assert big.max_model_len == 1024  # capped at the model's own limit
    big.close()


class _Counting:
    """Counts decode steps of an engine (wraps its _decode_step)."""

    def __init__(self, engine: Any) -> None:
        self.engine, self.calls = engine, 0
        self.original = engine._decode_step

    def __enter__(self) -> "_Counting":
        def step(seq: Any, token: int) -> None:
            self.calls += 1
            time.sleep(0.01)
            self.original(seq, token)

        self.engine._decode_step = step
        return self

    def __exit__(self, *exc: object) -> None:
        self.engine._decode_step = self.original


def _settled(counter: _Counting) -> int:
    before = -1
    for _ in range(100):
        time.sleep(0.05)
        if counter.calls == before:
            return before
        before = counter.calls
    raise AssertionError("generation did not stop")


def test_closing_the_iterator_stops_generation(engine: Any) -> None:
    prompt = engine.tokenizer.encode(PROMPT)

    async def take_three() -> list[int]:
        agen = engine.generate(prompt, SamplingParams(max_tokens=500, temperature=0.0, stop_token_ids=(-1,)))
        got = [await agen.__anext__() for _ in range(3)]
        await agen.aclose()
        return got

    with _Counting(engine) as counter:
        assert len(asyncio.run(take_three())) == 3
        assert _settled(counter) < 20  # stopped within a step or two, not after 500 tokens


def test_cancelling_the_task_stops_generation(engine: Any) -> None:
    prompt = engine.tokenizer.encode(PROMPT)

    async def run() -> int:
        seen = 0

        async def consume() -> None:
            nonlocal seen
            async for _ in engine.generate(prompt, SamplingParams(max_tokens=500, temperature=0.0,
                                                                  stop_token_ids=(-1,))):
                seen += 1

        task = asyncio.create_task(consume())
        while seen < 2:
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return seen

    with _Counting(engine) as counter:
        asyncio.run(asyncio.wait_for(run(), 60))
        assert _settled(counter) < 20
    # the engine is free again: the next request runs to completion
    assert len(collect(engine, prompt, SamplingParams(max_tokens=3, temperature=0.0, stop_token_ids=(-1,)))) == 3


def test_refuses_pickle_only_folder(tmp_path: Path) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "pytorch_model.bin").write_bytes(b"\x80\x04not really")
    with pytest.raises(CouldNotRun, match="only pickle weights.*pytorch_model.bin.*safetensors only"):
        TransformersEngine(folder).load()
    with pytest.raises(CouldNotRun, match="does not exist"):
        TransformersEngine(tmp_path / "missing").load()
    (folder / "pytorch_model.bin").unlink()
    with pytest.raises(CouldNotRun, match="no \\*.safetensors"):
        TransformersEngine(folder).load()


def test_unknown_device_or_dtype(tiny_dir: Path) -> None:
    from gptoss_cli.errors import UsageError

    with pytest.raises(UsageError, match="dtype"):
        TransformersEngine(tiny_dir, device="cpu", dtype="int3").load()
    with pytest.raises(UsageError, match="device"):
        TransformersEngine(tiny_dir, device="tpu").load()


def test_memory_estimate_of_gpt_oss_20b(tmp_path: Path) -> None:
    folder = make_virtual_20b(tmp_path / "20b")
    assert 41.0e9 < weight_bytes(folder, "bfloat16") < 42.5e9  # dequantised: ~41.8 GB (reference §1.4)
    assert 13.5e9 < weight_bytes(folder, "bfloat16", mxfp4="native") < 14.0e9  # as stored: ~13.8 GB
    est = estimate_memory(folder, "cuda", "bfloat16", max_model_len=8192, available=80 * GIB)
    assert est.fits and 42e9 < est.needed_bytes < 48e9 and "dequantised to bfloat16" in est.detail
    with pytest.raises(CouldNotRun) as info:
        check_memory(folder, "cpu", "float32", available=24 * GIB)
    message = info.value.one_line()
    assert "needs about" in message and "GiB on cpu" in message and "24.0 GiB available" in message
    assert float(message.split("needs about ")[1].split(" GiB")[0]) > 80  # fp32 weights alone are ~84 GB


def test_load_refuses_before_loading_when_memory_is_short(tiny_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from gptoss_cli.serve.engines.transformers import memory

    monkeypatch.setattr(memory, "available_bytes", lambda device: 1024)
    eng = TransformersEngine(tiny_dir, device="cpu")
    with pytest.raises(CouldNotRun, match=r"needs about \d+\.\d GiB on cpu .* 0\.0 GiB available"):
        load_engine(eng)
    assert eng.model is None


def test_mxfp4_checkpoint_is_dequantised_on_cpu(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    folder = make_tiny_mxfp4_model(tmp_path / "mx")
    eng = TransformersEngine(folder, device="cpu")
    with caplog.at_level(logging.WARNING, logger="gptoss.serve"):
        load_engine(eng)
    try:
        assert eng.description.startswith("GptOssForCausalLM on cpu (float32, MXFP4 dequantised), context ")
        assert eng.mxfp4 == "dequantise"  # auto: no native kernels on the CPU, and the dequantised model fits
        out = collect(eng, eng.tokenizer.encode(PROMPT), SamplingParams(max_tokens=4, temperature=0.0,
                                                                         stop_token_ids=(-1,)))
        assert len(out) == 4
    finally:
        eng.close()


def test_generate_before_load_fails_clearly(tiny_dir: Path) -> None:
    with pytest.raises(RuntimeError, match="not loaded"):
        collect(TransformersEngine(tiny_dir), [1, 2], SamplingParams(max_tokens=1))


def test_close_stops_a_running_generation(tiny_dir: Path) -> None:
    eng = TransformersEngine(tiny_dir, device="cpu")
    load_engine(eng)
    prompt = eng.tokenizer.encode(PROMPT)

    async def go() -> tuple[float, int]:
        agen = eng.generate(prompt, SamplingParams(max_tokens=1000, temperature=0.0, stop_token_ids=(-1,)))
        await agen.__anext__()
        started = time.monotonic()
        await asyncio.to_thread(eng.close)
        rest = [t async for t in agen]  # the stream simply ends
        return time.monotonic() - started, len(rest)

    with _Counting(eng):
        elapsed, rest = asyncio.run(asyncio.wait_for(go(), 60))
    assert elapsed < 5 and rest < 100 and eng.model is None


def test_tiny_temperatures_are_greedy(engine: Any) -> None:
    """Below 1e-38 a float32 division by the temperature overflows: such temperatures are greedy, not a 500."""
    prompt = engine.tokenizer.encode(PROMPT)
    greedy = collect(engine, prompt, SamplingParams(max_tokens=12, temperature=0.0, stop_token_ids=(-1,)))
    for tiny in (1e-300, 1e-39, 1e-7):
        assert collect(engine, prompt, SamplingParams(max_tokens=12, temperature=tiny, seed=1,
                                                      stop_token_ids=(-1,))) == greedy
