"""Scheduler: slots, queue, 429 with Retry-After, deadlines, cancellation, draining (pure asyncio, no HTTP)."""

from __future__ import annotations

import asyncio

import pytest

from gptoss_cli.serve.engines.interface import SamplingParams

from gptoss_cli.serve.engines.scripted import ScriptedEngine
from gptoss_cli.serve.generation.scheduler import Aborted, Draining, QueueFull, RequestTimedOut, Scheduler

pytestmark = pytest.mark.timeout(30)


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 20))


async def ticker(n: int, delay: float = 0.01):
    for i in range(n):
        await asyncio.sleep(delay)
        yield i


def test_admits_up_to_concurrency_then_queues_then_refuses():
    async def main():
        events = []
        s = Scheduler(max_concurrency=2, max_queue=3, request_timeout=10, on_event=events.append)
        leases = [await s.acquire(), await s.acquire()]
        assert s.in_flight == 2 and s.queued == 0
        waiters = [asyncio.ensure_future(s.acquire()) for _ in range(3)]
        await asyncio.sleep(0.01)
        assert s.queued == 3
        with pytest.raises(QueueFull) as info:
            await s.acquire()
        assert 1 <= info.value.retry_after <= 60
        assert info.value.status == 429
        assert events == ["rejected_overloaded"]
        # FIFO: freeing one slot admits the oldest waiter
        leases[0].release()
        await asyncio.sleep(0.01)
        assert waiters[0].done() and not waiters[1].done()
        assert s.in_flight == 2 and s.queued == 2
        for w in waiters[1:]:
            w.cancel()
        await asyncio.sleep(0.01)
        assert s.queued == 0
        leases[1].release()
        (await waiters[0]).release()
        assert s.in_flight == 0

    run(main())


def test_release_is_idempotent_and_never_goes_negative():
    async def main():
        s = Scheduler(max_concurrency=1, max_queue=0)
        lease = await s.acquire()
        lease.release()
        lease.release()
        assert s.in_flight == 0
        (await s.acquire()).release()

    run(main())


def test_queue_wait_counts_against_the_deadline():
    async def main():
        events = []
        s = Scheduler(max_concurrency=1, max_queue=4, request_timeout=0.2, on_event=events.append)
        held = await s.acquire(timeout=10)
        with pytest.raises(RequestTimedOut) as info:
            await s.acquire()
        assert info.value.status == 504 and "free slot" in str(info.value)
        assert s.queued == 0 and events == ["timed_out"]
        held.release()
        assert s.in_flight == 0

    run(main())


def test_generation_timeout_frees_slot_and_closes_engine_iterator():
    async def main():
        engine = ScriptedEngine(["x" * 200], delay=0.05)
        s = Scheduler(max_concurrency=1, max_queue=0, request_timeout=0.3)
        it = await s.stream(lambda: engine.generate([1], SamplingParams(max_tokens=500)))
        got = []
        with pytest.raises(RequestTimedOut):
            async for tok in it:
                got.append(tok)
        assert 2 <= len(got) < 20
        assert s.in_flight == 0
        assert engine.cancelled == 1

    run(main())


def test_consumer_cancellation_frees_slot_within_one_second():
    async def main():
        engine = ScriptedEngine(["y" * 1000], delay=0.02)
        s = Scheduler(max_concurrency=1, max_queue=0, request_timeout=60)

        async def consume():
            it = await s.stream(lambda: engine.generate([1], SamplingParams(max_tokens=1000)))
            async for _ in it:
                pass

        task = asyncio.ensure_future(consume())
        await asyncio.sleep(0.2)
        assert s.in_flight == 1
        task.cancel()
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        while s.in_flight and loop.time() - t0 < 1.0:
            await asyncio.sleep(0.01)
        assert s.in_flight == 0
        await asyncio.sleep(0.05)
        assert engine.cancelled == 1
        # and the slot is usable again
        (await s.acquire()).release()

    run(main())


def test_closing_the_iterator_early_frees_slot():
    async def main():
        engine = ScriptedEngine(["abcdefgh"], delay=0.01)
        s = Scheduler(max_concurrency=1, max_queue=0)
        it = await s.stream(lambda: engine.generate([1], SamplingParams(max_tokens=50)))
        assert await it.__anext__() == ord("a")
        await it.aclose()
        assert s.in_flight == 0

    run(main())


def test_full_run_and_retry_after_tracks_hold_time():
    async def main():
        s = Scheduler(max_concurrency=2, max_queue=0)
        for _ in range(5):
            it = await s.stream(lambda: ticker(3))
            assert [x async for x in it] == [0, 1, 2]
        assert s.in_flight == 0
        assert s.retry_after() == 1  # slots are held ~30 ms

    run(main())


def test_draining_refuses_new_lets_running_finish():
    async def main():
        events = []
        s = Scheduler(max_concurrency=2, max_queue=2, on_event=events.append)
        it = await s.stream(lambda: ticker(10, 0.02))
        consumer = asyncio.ensure_future(_collect(it))
        await asyncio.sleep(0.05)
        drained = asyncio.ensure_future(s.drain(5.0))
        await asyncio.sleep(0.01)
        with pytest.raises(Draining) as info:
            await s.acquire()
        assert info.value.status == 503
        assert await drained is True
        assert await consumer == list(range(10))
        assert "rejected_draining" in events

    run(main())


def test_drain_timeout_aborts_the_rest():
    async def main():
        s = Scheduler(max_concurrency=1, max_queue=2)
        it = await s.stream(lambda: ticker(1000, 0.02))
        consumer = asyncio.ensure_future(_collect(it))
        queued = asyncio.ensure_future(s.acquire())
        await asyncio.sleep(0.05)
        assert await s.drain(0.2) is False
        with pytest.raises(Aborted):
            await consumer
        with pytest.raises(Aborted):
            await queued
        assert s.in_flight == 0 and s.queued == 0

    run(main())


def test_drain_with_nothing_running_is_immediate():
    async def main():
        s = Scheduler()
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        assert await s.drain(10) is True
        assert loop.time() - t0 < 0.5

    run(main())


def test_invalid_limits():
    with pytest.raises(ValueError):
        Scheduler(max_concurrency=0)
    with pytest.raises(ValueError):
        Scheduler(max_queue=-1)


async def _collect(it):
    return [x async for x in it]
