"""KV admission of the batch loop on a tiny real GptOssForCausalLM: rows reserve KV as they grow, a short request is
not blocked by a long one without ``max_tokens``, the newest row is preempted when memory runs short and resumes with
the same answer, and both are reported (engine hook → /metrics and the access log)."""

from __future__ import annotations

import asyncio
import contextvars
import time

import httpx
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from gptoss_cli.serve.engines.interface import SamplingParams  # noqa: E402
from gptoss_cli.serve.engines.transformers.admission import GROW_TOKENS, KVSizing, admit, newest_first  # noqa: E402
from gptoss_cli.serve.engines.transformers.batching import BatchingEngine, kv_sizing  # noqa: E402
from tests.load_fixtures import reference_greedy, tiny_gpt_oss, torch_threads  # noqa: E402

pytestmark = pytest.mark.timeout(180)
LEN = 256
WHO: contextvars.ContextVar[str] = contextvars.ContextVar("who", default="?")


@pytest.fixture(scope="module")
def model():
    with torch_threads(1):
        yield tiny_gpt_oss()


def budget_for(model, rows: int, tokens: int) -> int:
    return kv_sizing(model.config, 4, 0, LEN).cost(rows, tokens)


def engine_with(model, budget: int, events: list):
    eng = BatchingEngine(model, None, max_model_len=LEN, max_batch=4, kv_cache_bytes=budget,
                         on_event=lambda name: events.append((WHO.get(), name)))
    eng.load()
    return eng


async def collect(eng, name, prompt, params, delay=0.0, progress=None):
    await asyncio.sleep(delay)
    WHO.set(name)
    out = []
    async for tok in eng.generate(prompt, params):
        out.append(tok)
        if progress is not None:
            progress[name] = len(out)
    if progress is not None:
        progress[f"{name} done at"] = dict(progress)
    return out


def run(coro, timeout: float = 120):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def test_a_short_request_is_not_blocked_by_one_without_max_tokens(model):
    """The long request may grow to the whole context (max_tokens = the rest of it, as without max_tokens), more
    than the budget holds; the short one behind it still starts at once and finishes in its own few steps."""
    long_prompt, short_prompt = [11, 12, 13, 14], [40, 41, 42]
    events: list = []
    eng = engine_with(model, budget_for(model, 2, 100), events)
    progress: dict = {}
    try:
        async def main():
            long = asyncio.ensure_future(collect(eng, "long", long_prompt,
                                                 SamplingParams(max_tokens=LEN - 4, temperature=0.0),
                                                 progress=progress))
            while progress.get("long", 0) < 5:  # the long one is running
                await asyncio.sleep(0.001)
            short = await collect(eng, "short", short_prompt, SamplingParams(max_tokens=8, temperature=0.0),
                                  progress=progress)
            return await long, short

        with torch_threads(1):
            long_out, short_out = run(main())
    finally:
        eng.close()
    assert long_out == reference_greedy(model, long_prompt, LEN - 4)
    assert short_out == reference_greedy(model, short_prompt, 8)
    # the short one finished while the long one had most of its way to go (before: it waited for all 252 tokens)
    assert progress["short done at"]["long"] < 100
    assert events == []  # it never waited for KV, nobody was preempted


def test_the_newest_row_is_preempted_and_resumes_with_the_same_answer(model):
    """Two rows that outgrow the budget together: the newest leaves the batch, waits, resumes by recomputing its
    KV; greedy, seeded and penalised answers equal the ones given with memory to spare."""
    prompts = {"old": [21, 22, 23, 24], "new": [31, 32, 33], "seeded": [51, 52]}
    params = {"old": SamplingParams(max_tokens=90, temperature=0.0),
              "new": SamplingParams(max_tokens=90, temperature=0.0),
              "seeded": SamplingParams(max_tokens=90, temperature=1.0, top_p=0.9, seed=7, frequency_penalty=0.5)}

    def everyone(eng):
        async def main():
            names = list(prompts)
            outs = await asyncio.gather(*[collect(eng, n, prompts[n], params[n], delay=0.01 * i)
                                          for i, n in enumerate(names)])
            return dict(zip(names, outs))
        with torch_threads(1):
            return run(main())

    roomy_events: list = []
    roomy = engine_with(model, 1 << 30, roomy_events)
    try:
        expected = everyone(roomy)
    finally:
        roomy.close()
    events: list = []
    tight = engine_with(model, budget_for(model, 3, 45), events)
    try:
        got = everyone(tight)
    finally:
        tight.close()
    assert roomy_events == []
    assert got == expected
    assert expected["old"] == reference_greedy(model, prompts["old"], 90)
    preempted = [who for who, name in events if name == "preempted"]
    assert preempted and "old" not in preempted, events  # the oldest row is never the one to go (order: below)
    waited = {who for who, name in events if name == "kv_wait"}
    assert set(preempted) <= waited  # and waits for room before it resumes


def test_admission_rules_in_numbers():
    sizing = KVSizing(bytes_per_token=10, sliding_bytes_per_row=0, budget_bytes=2 * 10 * 100, max_model_len=1000)

    class R:
        def __init__(self, seq, prompt, generated=0):
            self.seq, self.prompt, self.generated = seq, [1] * prompt, [2] * generated

    # a lone request runs even past the budget (500 + head room > 200 tokens)
    lone = [R(0, 500)]
    assert admit(lone, 0, 0, sizing, max_batch=4, max_prefill_tokens=4096)[0][0].seq == 0 and lone == []
    # a second joins while the pair, grown by GROW_TOKENS, fits; the first that does not fit waits at the head
    pending = [R(1, 10), R(2, 90)]
    admitted, held = admit(pending, 1, 100 - GROW_TOKENS - 1, sizing, max_batch=4, max_prefill_tokens=4096)
    assert [r.seq for r in admitted] == [1] and held is not None and held.seq == 2 and [r.seq for r in pending] == [2]
    # a resumed request counts what it produced already
    assert admit([R(3, 10)], 1, 10, sizing, max_batch=4, max_prefill_tokens=4096)[1] is None
    assert admit([R(3, 10, 80)], 1, 10, sizing, max_batch=4, max_prefill_tokens=4096)[1] is not None
    rows = [R(5, 1), R(9, 1), R(7, 1)]
    assert newest_first(rows, 65, sizing) == []  # 3 rows × 66 columns fit
    assert [r.seq for r in newest_first(rows, 66, sizing)] == [9]  # 3 × 67 do not, 2 × 67 do: the newest goes
    assert [r.seq for r in newest_first(rows, 150, sizing)] == [9, 7]
    assert newest_first(rows[:1], 10_000, sizing) == []  # never the last row


def test_engine_events_count_on_the_record_and_the_access_line():
    from gptoss_cli.serve.generation.metrics import ServeMetrics
    from gptoss_cli.serve.generation.record import RequestRecord, _current
    from gptoss_cli.serve.openai.accesslog import format_line

    metrics = ServeMetrics()
    rec = RequestRecord(id="r1", method="POST", path="/v1/chat/completions")
    assert "kv_waits" not in format_line(rec) and "preemptions" not in format_line(rec)
    token = _current.set(rec)
    try:
        for name in ("kv_wait", "preempted", "preempted"):
            metrics.engine_event(name)
    finally:
        _current.reset(token)
    metrics.engine_event("preempted")  # outside a request: the counter only
    assert (rec.kv_waits, rec.preemptions) == (1, 2)
    line = format_line(rec)
    assert " kv_waits=1 " in f"{line} " and " preemptions=2" in f"{line} "
    text = metrics.render()[0].decode()
    assert "gptoss_kv_waits_total 1.0" in text and "gptoss_preemptions_total 3.0" in text


def test_waits_and_preemptions_reach_metrics_and_the_access_log(tmp_path):
    """Over HTTP: a request held back for KV and one preempted show in /metrics and in their access-log lines."""
    from gptoss_cli.serve.engines.transformers.engine import TransformersEngine
    from gptoss_cli.serve.generation.metrics import ServeMetrics
    from gptoss_cli.serve.openai.app import create_app
    from gptoss_cli.serve.settings import ServeSettings
    from tests.model_fixtures import make_tiny_model
    from tests.serve_fixtures import live_server
    from tests.test_load_http import scrape

    with torch_threads(1):
        folder = make_tiny_model(tmp_path / "tiny")
        inner = TransformersEngine(folder, device="cpu")
        metrics = ServeMetrics()
        eng = BatchingEngine.wrap(inner, max_batch=4, kv_cache_bytes=1, on_event=metrics.engine_event)
        lines: list[str] = []
        settings = ServeSettings(current_date="2025-06-01", max_concurrency=4, cache=False)
        app = create_app(settings, eng, metrics=metrics, emit_access_log=lines.append)

        async def ask(base):
            async with httpx.AsyncClient(base_url=base, timeout=120) as client:
                async def one(i):
                    r = await client.post("/v1/completions", json={
                        "model": "gpt-oss-20b", "prompt": f"Count {i}", "max_tokens": 12, "temperature": 0})
                    assert r.status_code == 200, r.text
                return await asyncio.gather(*[one(i) for i in range(3)])

        with live_server(app) as base:
            asyncio.run(ask(base))
            deadline = time.monotonic() + 5
            while len([x for x in lines if "/v1/completions" in x]) < 3 and time.monotonic() < deadline:
                time.sleep(0.02)
            values = scrape(base)
    # a budget of one byte holds no second row: the requests that came while one ran waited for it
    assert values["gptoss_kv_waits_total"] >= 1
    assert values["gptoss_preemptions_total"] == 0
    waited = [x for x in lines if "kv_waits=1" in x]
    assert len(waited) == values["gptoss_kv_waits_total"]
