"""The gpt-oss decode step (serve/engines/transformers/decode_step.py) against transformers' own forward."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from transformers import DynamicCache  # noqa: E402

from gptoss_cli.serve.engines.transformers import decode_step as ds  # noqa: E402
from gptoss_cli.serve.engines.transformers.batch_state import BatchState  # noqa: E402
from gptoss_cli.serve.engines.interface import SamplingParams  # noqa: E402
from tests.load_fixtures import reference_greedy, tiny_gpt_oss, torch_threads  # noqa: E402

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def model():
    with torch_threads(1):
        yield tiny_gpt_oss(seed=4)


def _prefilled(model, rows: list[list[int]]):
    """A left-padded batch prefilled by transformers: (cache, 2-D mask, next positions)."""
    length = max(len(r) for r in rows)
    ids = torch.zeros((len(rows), length), dtype=torch.long)
    mask = torch.zeros((len(rows), length), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, length - len(r):] = torch.tensor(r)
        mask[i, length - len(r):] = 1
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    cache = DynamicCache(config=model.config)
    model(input_ids=ids, attention_mask=mask, position_ids=positions, cache=cache, use_cache=True, logits_to_keep=1)
    return cache, mask, torch.tensor([[len(r)] for r in rows])


def _steps(model, rows, step, count=20, dtype=torch.float32):
    """``count`` decode steps on a padded batch; each step's logits, fed the same tokens on either path."""
    model.to(dtype)
    cache, mask, positions = _prefilled(model, rows)
    tokens = torch.tensor([[7 + i] for i in range(len(rows))])
    seen = []
    with torch.inference_mode():
        for n in range(count):
            mask = torch.cat([mask, torch.ones((len(rows), 1), dtype=mask.dtype)], dim=-1)
            additive = torch.where(mask[:, None, None, :].bool(), 0.0, torch.finfo(dtype).min).to(dtype)
            window = model.config.sliding_window
            masks = {"full_attention": additive, "sliding_attention": additive[..., -min(mask.shape[1], window):]}
            if step is None:
                logits = model(input_ids=tokens, attention_mask=mask, position_ids=positions + n, cache=cache,
                               use_cache=True).logits[:, -1, :]
            else:
                logits = step(tokens, positions + n, cache, masks)
            seen.append(logits.float())
            tokens = torch.tensor([[(11 * n + 3 * i) % 900 + 5] for i in range(len(rows))])
    return seen


ROWS = [[5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15], [21, 22], [31, 32, 33, 34]]


def test_a_padded_batch_past_the_sliding_window_gives_transformers_logits(model):
    theirs = _steps(model, ROWS, None)
    ours = _steps(model, ROWS, ds.decode_step_for(model))
    assert len(ours) == 20  # window 8: the sliding layers' keys are cut, the full layers' are not
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
        assert torch.equal(a.argmax(-1), b.argmax(-1))


def test_bfloat16_logits_agree_to_bfloat16_rounding(model):
    theirs = _steps(model, ROWS, None, count=6, dtype=torch.bfloat16)
    ours = _steps(model, ROWS, ds.decode_step_for(model), count=6, dtype=torch.bfloat16)
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, rtol=0.05, atol=0.05)


def test_large_batches_call_the_experts_module_and_agree(model, monkeypatch):
    calls = []
    experts = model.model.layers[0].mlp.experts
    original = type(experts).forward
    monkeypatch.setattr(type(experts), "forward", lambda self, *a: (calls.append(1), original(self, *a))[1])
    theirs = _steps(model, ROWS, None, count=3)
    calls.clear()
    ours_all = _steps(model, ROWS, ds.decode_step_for(model), count=3)
    assert len(calls) == 2  # only the prefill's (one per layer): the steps run every expert in two batched products
    calls.clear()
    monkeypatch.setattr(ds, "ALL_EXPERTS_MACS", 0)
    ours_module = _steps(model, ROWS, ds.decode_step_for(model), count=3)
    assert len(calls) == 2 + 3 * 2  # the prefill's, then one per layer and step
    for a, b, c in zip(ours_all, ours_module, theirs):
        torch.testing.assert_close(a, c, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(b, c, rtol=1e-4, atol=1e-5)


def test_large_layers_keep_their_three_projections_and_agree(model, monkeypatch):
    monkeypatch.setattr(ds, "FUSE_QKV_BYTES", 0)
    q = model.model.layers[0].self_attn.q_proj.weight
    storage = q.untyped_storage().data_ptr()
    theirs = _steps(model, ROWS, None, count=4)
    ours = _steps(model, ROWS, ds.decode_step_for(model), count=4)
    assert all(layer.wqkv is None for layer in ds.decode_step_for(model).layers)
    assert model.model.layers[0].self_attn.q_proj.weight.untyped_storage().data_ptr() == storage  # not copied
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_the_models_own_forward_is_unchanged_by_fusing_qkv(model):
    ids = torch.tensor([[3, 4, 5, 6, 7]])
    with torch.inference_mode():
        before = model(input_ids=ids).logits
        ds.decode_step_for(model)
        after = model(input_ids=ids).logits
    assert torch.equal(before, after)
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in tiny_gpt_oss(seed=4).parameters())


def test_greedy_answers_through_the_batch_equal_generate(model):
    """BatchState takes the fast step; its greedy answers are transformers' ``generate()``'s."""
    state = BatchState(model)
    assert state.fast_step is not None

    class Row:
        def __init__(self, prompt):
            self.prompt, self.generated, self.sampler, self.position = prompt, [], None, 0
            self.params = SamplingParams(max_tokens=24, temperature=0.0)

    rows = [Row(p) for p in ROWS]
    with torch.inference_mode():
        for r, tok in zip(rows, state.prefill(rows, chunk=4)):
            r.generated.append(tok)
        state.merge_pending(keep=lambda r: True)
        for _ in range(23):
            for r, tok in zip(state.rows, state.decode()):
                r.generated.append(tok)
    assert [r.generated for r in rows] == [reference_greedy(model, p, 24) for p in ROWS]


def test_models_it_does_not_know_go_through_transformers(model, monkeypatch):
    assert ds.supported(model) is None
    handle = model.model.layers[1].mlp.register_forward_hook(lambda *a: None)
    assert ds.supported(model) == "the model has forward hooks"
    handle.remove()
    model.lm_head._hf_hook = object()  # accelerate's dispatch hooks replace forward: they must run
    assert ds.supported(model) == "the model has forward hooks"
    del model.lm_head._hf_hook
    model.config._attn_implementation = "sdpa"
    assert ds.supported(model) == "attention implementation is not eager"
    assert ds.decode_step_for(model) is None
    assert BatchState(model).fast_step is None
    model.config._attn_implementation = "eager"
    import transformers

    class OldCache:  # a transformers whose DynamicCache takes no config: no sliding layers, so no fast step
        def __init__(self):
            self.layers = []

    monkeypatch.setattr(transformers, "DynamicCache", OldCache)
    assert ds.supported(model) == "this transformers' DynamicCache has no per-layer sliding caches"
    monkeypatch.undo()
    other = tiny_gpt_oss(seed=4)
    other.model.layers[0].mlp.experts.__class__ = type("Mxfp4GptOssExperts", (torch.nn.Module,), {})
    assert ds.supported(other) == "a layer is not the stock transformers gpt-oss layer"


def test_the_step_keeps_no_cycle_back_to_the_model():
    """The step hangs off the model; it must not point back at it, or a closed engine's weights wait for the GC."""
    import gc
    import weakref

    model = tiny_gpt_oss(seed=4)
    assert ds.decode_step_for(model) is not None
    ref = weakref.ref(model)
    gc.disable()
    try:
        del model
        assert ref() is None  # freed by reference counting alone
    finally:
        gc.enable()
