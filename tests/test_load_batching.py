"""BatchingEngine on a tiny real GptOssForCausalLM: batched greedy == unbatched, per-request sampling, cancel."""

from __future__ import annotations

import asyncio
import random

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from gptoss_cli.serve.engines.transformers.batching import BatchingEngine, BatchStepFailed, kv_sizing  # noqa: E402
from gptoss_cli.serve.engines.transformers.memory import kv_cache_bytes  # noqa: E402
from gptoss_cli.serve.options import parse_size as parse_bytes  # noqa: E402
from gptoss_cli.serve.engines.interface import SamplingParams  # noqa: E402
from tests.load_fixtures import reference_greedy, tiny_gpt_oss, torch_threads  # noqa: E402

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def model():
    with torch_threads(1):
        yield tiny_gpt_oss()


@pytest.fixture
def engine(model):
    steps: list[int] = []
    eng = BatchingEngine(model, None, max_model_len=256, max_batch=3, prefill_chunk=5,
                         on_step=lambda rows, s: steps.append(rows))
    eng.steps = steps
    eng.load()
    yield eng
    eng.close()


def run(coro, timeout: float = 60):
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def collect(eng, prompt, params, delay=0.0):
    await asyncio.sleep(delay)
    return [t async for t in eng.generate(prompt, params)]


def test_batched_greedy_equals_unbatched_generate(model, engine):
    rng = random.Random(3)
    cases = [([rng.randrange(5, 1000) for _ in range(rng.randint(1, 30))], rng.randint(1, 24), rng.random() * 0.03)
             for _ in range(10)]
    expected = [reference_greedy(model, p, n) for p, n, _ in cases]

    async def main():
        return await asyncio.gather(*[collect(engine, p, SamplingParams(max_tokens=n, temperature=0.0), d)
                                      for p, n, d in cases])

    got = run(main())
    assert got == expected
    assert max(engine.steps) > 1, "requests were never batched together"
    assert max(engine.steps) <= 3


def test_stop_tokens_and_max_model_len(model, engine):
    prompt = [11, 22, 33, 44]
    free = reference_greedy(model, prompt, 6)
    stop = free[2]
    first_stop = free.index(stop)

    async def main():
        stopped = await collect(engine, prompt, SamplingParams(max_tokens=6, temperature=0.0,
                                                               stop_token_ids=(stop,)))
        capped = await collect(engine, list(range(5, 5 + 250)), SamplingParams(max_tokens=50, temperature=0.0))
        return stopped, capped

    stopped, capped = run(main())
    assert stopped == free[: first_stop + 1]  # the stop token itself is yielded
    assert len(capped) == 256 - 250


def test_seeded_sampling_is_reproducible_and_independent_of_the_batch(engine):
    prompt = [5, 6, 7, 8, 9]
    seeded = SamplingParams(max_tokens=12, temperature=1.0, top_p=0.9, seed=1234)

    async def alone():
        return await collect(engine, prompt, seeded)

    async def crowded():
        others = [collect(engine, [100 + i] * (3 + i), SamplingParams(max_tokens=12, temperature=1.3, seed=i))
                  for i in range(2)]
        results = await asyncio.gather(collect(engine, prompt, seeded), *others)
        return results[0]

    a, b = run(alone()), run(crowded())
    assert a == b
    other_seed = run(collect(engine, prompt, SamplingParams(max_tokens=12, temperature=1.0, top_p=0.9, seed=99)))
    assert other_seed != a


def test_greedy_rows_are_untouched_by_sampled_neighbours(model, engine):
    prompt = [300, 301, 302]
    expected = reference_greedy(model, prompt, 10)

    async def main():
        noisy = [collect(engine, [400 + i, 7], SamplingParams(max_tokens=10, temperature=2.0)) for i in range(2)]
        results = await asyncio.gather(collect(engine, prompt, SamplingParams(max_tokens=10, temperature=0.0)),
                                       *noisy)
        return results[0]

    assert run(main()) == expected


def test_frequency_penalty_changes_greedy_choice(engine):
    async def main():
        plain = await collect(engine, [1, 2, 3], SamplingParams(max_tokens=30, temperature=0.0))
        penalised = await collect(engine, [1, 2, 3], SamplingParams(max_tokens=30, temperature=0.0,
                                                                    frequency_penalty=100.0))
        return plain, penalised

    plain, penalised = run(main())
    assert len(set(penalised)) == len(penalised)  # a huge penalty forbids any repeat
    assert len(set(plain)) < len(plain)  # the random tiny model does repeat itself without it


def test_cancelled_request_leaves_the_batch_and_others_finish(model, engine):
    long_prompt = [9, 8, 7]
    expected = reference_greedy(model, long_prompt, 40)

    async def main():
        keeper = asyncio.ensure_future(collect(engine, long_prompt, SamplingParams(max_tokens=40, temperature=0.0)))
        it = engine.generate([1, 1, 1], SamplingParams(max_tokens=200, temperature=0.0))
        await it.__anext__()
        await it.__anext__()
        await it.aclose()
        return await keeper

    assert run(main()) == expected
    # the cancelled row stopped early: far fewer than 200 steps ran in total
    assert len(engine.steps) < 100


def test_tiny_kv_budget_serialises_requests(model):
    steps: list[int] = []
    eng = BatchingEngine(model, None, max_model_len=256, max_batch=4, kv_cache_bytes=1,
                         on_step=lambda rows, s: steps.append(rows))
    eng.load()
    try:
        async def main():
            return await asyncio.gather(*[collect(eng, [i + 5] * 4, SamplingParams(max_tokens=5, temperature=0.0))
                                          for i in range(3)])

        results = run(main())
    finally:
        eng.close()
    assert all(len(r) == 5 for r in results)
    assert max(steps) == 1


def test_step_failure_fails_that_batch_and_the_loop_survives(model):
    eng = BatchingEngine(model, None, max_model_len=256, max_batch=2)
    eng.load()
    original = model.forward
    calls = {"n": 0}

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("boom")
        return original(*args, **kwargs)

    model.forward = flaky
    try:
        with pytest.raises(BatchStepFailed):
            run(collect(eng, [1, 2], SamplingParams(max_tokens=3, temperature=0.0)))
        assert len(run(collect(eng, [1, 2], SamplingParams(max_tokens=3, temperature=0.0)))) == 3
    finally:
        del model.forward
        eng.close()


def test_kv_sizing_and_parse_bytes(model):
    s = kv_sizing(model.config, 4, parse_bytes("1MiB"), 256)
    # one full + one sliding layer, 2 kv heads × 16 dims × K and V × 4 bytes
    assert s.bytes_per_token == 2 * 2 * 16 * 4
    assert s.sliding_bytes_per_row == 8 * 2 * 2 * 16 * 4
    assert s.rows_at_full_length() == (1 << 20) // (256 * 256 + 2048)
    # the memory check sizes the same cache with the same rule: one sequence of 256 tokens at float32
    assert kv_cache_bytes(model.config.to_dict(), 256, "float32") == 256 * s.bytes_per_token + s.sliding_bytes_per_row
    assert parse_bytes("1GiB") == 1 << 30 and parse_bytes("512MB") == 512_000_000
    assert parse_bytes("2g") == 2_000_000_000 and parse_bytes(4096) == 4096 and parse_bytes("1.5KiB") == 1536
    for bad in ("lots", "12 parsecs", "", "-1GiB"):
        with pytest.raises(ValueError):
            parse_bytes(bad)


def test_wrapped_transformers_engine_matches_unbatched_greedy_and_seeded(tmp_path):
    """The real engine alone vs the same engine behind the batching loop, on a tiny model folder."""
    from gptoss_cli.serve.engines.transformers.engine import TransformersEngine
    from tests.model_fixtures import make_tiny_model

    folder = make_tiny_model(tmp_path / "tiny")
    plain = TransformersEngine(folder, device="cpu")
    batched = BatchingEngine.wrap(TransformersEngine(folder, device="cpu"), max_batch=4)
    plain.load()
    batched.load()
    try:
        assert batched.max_model_len == plain.max_model_len
        assert batched.default_stop_token_ids == plain.default_stop_token_ids
        assert "batched, up to 4" in batched.description
        prompts = [plain.tokenizer.encode(f"<|start|>user<|message|>question {i}{'?' * i}<|end|><|start|>assistant")
                   for i in range(4)]
        cases = [SamplingParams(max_tokens=12, temperature=0.0),
                 SamplingParams(max_tokens=12, temperature=0.9, top_p=0.8, seed=7),
                 SamplingParams(max_tokens=12, temperature=1.0, seed=11, frequency_penalty=0.5),
                 SamplingParams(max_tokens=12, temperature=0.0, presence_penalty=1.0)]

        async def alone():
            return [await collect(plain, p, c) for p, c in zip(prompts, cases)]

        async def together():
            return await asyncio.gather(*[collect(batched, p, c) for p, c in zip(prompts, cases)])

        assert run(together()) == run(alone())
    finally:
        plain.close()
        batched.close()


def test_tiny_temperature_is_greedy_and_its_neighbours_are_untouched(model, engine):
    """temperature 1e-300 (any <= 1e-38 overflows a float32 division) is greedy, in a batch with others."""
    prompts = [[300, 301, 302], [400, 7], [401, 7, 9]]
    expected = [reference_greedy(model, p, 12) for p in prompts]
    temperatures = [1e-300, 0.0, 1e-39]

    async def main():
        return await asyncio.gather(*[collect(engine, p, SamplingParams(max_tokens=12, temperature=t))
                                      for p, t in zip(prompts, temperatures)])

    assert run(main()) == expected


def test_a_row_that_fails_fails_alone_and_the_batch_goes_on(model, engine, monkeypatch):
    """A failure while sampling one row ends that request only; the rows decoded with it finish normally."""
    from gptoss_cli.serve.engines.transformers import sampling

    original = sampling.RowSampler.pick
    picks: dict[int, int] = {}

    def pick(self, logits, greedy_choice=None):
        if self.params.seed == 666:
            picks[id(self)] = picks.get(id(self), 0) + 1
            if picks[id(self)] == 4:
                raise RuntimeError("probability tensor contains either inf, nan or element < 0")
        return original(self, logits, greedy_choice)

    monkeypatch.setattr(sampling.RowSampler, "pick", pick)
    prompts = [[9, 8, 7], [300, 301], [5, 6, 7, 8]]
    expected = [reference_greedy(model, p, 30) for p in prompts[1:]]

    async def main():
        bad = collect(engine, prompts[0], SamplingParams(max_tokens=30, temperature=0.8, seed=666))
        good = [collect(engine, p, SamplingParams(max_tokens=30, temperature=0.0)) for p in prompts[1:]]
        return await asyncio.gather(bad, *good, return_exceptions=True)

    failed, *finished = run(main())
    assert isinstance(failed, BatchStepFailed)
    assert finished == expected
    assert max(engine.steps) > 1, "the failing request never shared a batch"
    assert len(run(collect(engine, [1, 2], SamplingParams(max_tokens=3, temperature=0.0)))) == 3


def test_a_failed_prefill_fails_only_the_newcomer(model, monkeypatch):
    """A prefill that fails (one bad prompt among the arrivals) fails that request; the running rows go on."""
    eng = BatchingEngine(model, None, max_model_len=256, max_batch=3)
    eng.load()
    original = model.forward

    def forward(*args, **kwargs):
        ids = kwargs.get("input_ids")
        if ids is not None and ids.shape[1] > 1 and bool((ids == 999).any()):
            raise RuntimeError("bad prompt")
        return original(*args, **kwargs)

    model.forward = forward
    try:
        async def main():
            running = asyncio.ensure_future(collect(eng, [300, 301], SamplingParams(max_tokens=40, temperature=0.0)))
            await asyncio.sleep(0.05)
            late = await asyncio.gather(collect(eng, [999, 5], SamplingParams(max_tokens=5, temperature=0.0)),
                                        collect(eng, [5, 6], SamplingParams(max_tokens=5, temperature=0.0)),
                                        return_exceptions=True)
            return await running, late

        running, (bad, good) = run(main())
    finally:
        del model.forward
        eng.close()
    assert running == reference_greedy(model, [300, 301], 40)
    assert isinstance(bad, BatchStepFailed)
    assert good == reference_greedy(model, [5, 6], 5)


def test_seeds_are_reduced_the_same_way_on_both_paths(tmp_path):
    """One documented reduction (seed mod 2**64) on the single and the batched path, negative seeds included."""
    from gptoss_cli.serve.engines.transformers.engine import TransformersEngine
    from tests.model_fixtures import make_tiny_model

    folder = make_tiny_model(tmp_path / "tiny")
    plain = TransformersEngine(folder, device="cpu")
    batched = BatchingEngine.wrap(TransformersEngine(folder, device="cpu"), max_batch=4)
    plain.load()
    batched.load()
    try:
        prompt = plain.tokenizer.encode("<|start|>user<|message|>seeds<|end|><|start|>assistant")
        seeds = [-5, 2**63 - 1, 2**63 + 3, 2**64 + 7]
        cases = [SamplingParams(max_tokens=10, temperature=1.0, seed=s, stop_token_ids=(-1,)) for s in seeds]

        async def alone():
            return [await collect(plain, prompt, c) for c in cases]

        async def together():
            return await asyncio.gather(*[collect(batched, prompt, c) for c in cases])

        single, many = run(alone()), run(together())
        assert single == many
        assert len({tuple(tokens) for tokens in single}) > 1  # the seeds are used, not ignored
        same = SamplingParams(max_tokens=10, temperature=1.0, seed=2**64 + 7 - 2**64, stop_token_ids=(-1,))
        assert run(collect(plain, prompt, same)) == single[3]
    finally:
        plain.close()
        batched.close()


def test_decode_masks_give_the_logits_transformers_masks_give(model, monkeypatch):
    """The batch builds its decode-step attention masks itself (padding only); on a padded batch, past the sliding
    window, every step's logits are bit-for-bit those of transformers building its own masks from the 2-D mask."""
    from gptoss_cli.serve.engines.transformers import batch_state as bs

    class Row:
        def __init__(self, prompt):
            self.prompt, self.generated, self.sampler, self.position = prompt, [], None, 0
            self.params = SamplingParams(max_tokens=64, temperature=0.0)

    original = bs.sample

    def run(own_masks: bool) -> list:
        seen: list = []
        monkeypatch.setattr(bs, "sample", lambda logits, reqs: (seen.append(logits.clone()), original(logits, reqs))[1])
        state = bs.BatchState(model)
        state.fast_step = None  # transformers' forward on both sides: only the masks differ
        if not own_masks:
            monkeypatch.setattr(state, "_decode_masks", lambda: state.mask)
        rows = [Row([5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]), Row([21, 22]), Row([31, 32, 33, 34])]
        with torch.inference_mode():
            for r, tok in zip(rows, state.prefill(rows, chunk=4)):
                r.generated.append(tok)
            state.merge_pending(keep=lambda r: True)
            for _ in range(20):  # the window is 8: the sliding layers' masks are cut, the full layers' are not
                for r, tok in zip(state.rows, state.decode()):
                    r.generated.append(tok)
        return seen

    ours, theirs = run(True), run(False)
    assert len(ours) == len(theirs) == 21
    assert all(torch.equal(a, b) for a, b in zip(ours, theirs))
