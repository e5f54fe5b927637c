"""Admission control between the HTTP layer and the engine.

``max_concurrency`` requests generate at once; up to ``max_queue`` more wait for a slot (first come, first served);
beyond both a request is refused at once with ``QueueFull`` (→ 429 + ``Retry-After``). Every request has a deadline
(``request_timeout`` from arrival, queue wait included) → ``RequestTimedOut`` (→ 504), and its slot is freed. When the
consumer stops (client disconnect cancels the task, or closes the iterator) the slot is freed at once and the engine's
iterator is closed, which cancels its generation. ``start_draining()`` (shutdown) refuses new requests with
``Draining`` (→ 503); ``drain(timeout)`` waits for admitted requests, then aborts the rest (``Aborted``, → 503).

Pure asyncio, no I/O. Observers (metrics) read ``in_flight`` / ``queued`` and get ``on_event(name)`` callbacks:
``rejected_overloaded``, ``rejected_draining``, ``timed_out``, ``aborted``, ``cancelled``.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, AsyncIterator, Callable


class SchedulerError(Exception):
    """Base for the refusals and failures the HTTP layer maps to an OpenAI error envelope."""

    status: int = 503
    code: str = "unavailable"
    type: str = "server_error"


class QueueFull(SchedulerError):
    status, code, type = 429, "overloaded", "rate_limit_error"

    def __init__(self, retry_after: int, in_flight: int, queued: int) -> None:
        super().__init__(
            f"the server is busy ({in_flight} generating, {queued} waiting); retry in {retry_after} s"
        )
        self.retry_after = retry_after


class Draining(SchedulerError):
    status, code, type = 503, "shutting_down", "server_error"

    def __init__(self) -> None:
        super().__init__("the server is shutting down and accepts no new requests; retry on another instance")
        self.retry_after = 5


class Aborted(SchedulerError):
    status, code, type = 503, "aborted", "server_error"

    def __init__(self) -> None:
        super().__init__("the request was cancelled because the server is shutting down")


class ClientGone(SchedulerError):
    """The client disconnected; its generation was stopped (nobody reads the answer, 499 in the access log)."""

    status, code, type = 499, "client_closed_request", "invalid_request_error"

    def __init__(self) -> None:
        super().__init__("the client closed the connection; generation stopped")


class RequestTimedOut(SchedulerError):
    status, code, type = 504, "timeout", "timeout_error"

    def __init__(self, timeout: float, where: str) -> None:
        super().__init__(f"the request took longer than {timeout:g} s ({where}); it was cancelled")
        self.timeout = timeout


@dataclass(eq=False)
class Lease:
    """One admitted request: holds a generation slot from ``acquire()`` until ``release()``."""

    scheduler: "Scheduler"
    deadline: float
    admitted_at: float
    queued_for: float
    aborted: asyncio.Future
    released: bool = False

    def release(self) -> None:
        if not self.released:
            self.released = True
            self.scheduler._release(self)

    def remaining(self) -> float:
        return self.deadline - time.monotonic()


@dataclass(eq=False)
class _Waiter:
    fut: asyncio.Future
    deadline: float
    since: float


class Scheduler:
    def __init__(
        self,
        max_concurrency: int = 4,
        max_queue: int = 32,
        request_timeout: float | None = 600.0,
        on_event: Callable[[str], None] | None = None,
    ) -> None:
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        if max_queue < 0:
            raise ValueError("max_queue must be 0 or more")
        self.max_concurrency = max_concurrency
        self.max_queue = max_queue
        self.request_timeout = request_timeout if request_timeout and request_timeout > 0 else None
        self.on_event = on_event or (lambda name: None)
        self._active: set[Lease] = set()
        self._waiters: deque[_Waiter] = deque()
        self._draining = False
        self._idle = asyncio.Event()
        self._idle.set()
        self._mean_hold = 2.0  # seconds a slot is held, moving average (for Retry-After)

    # -- observation ----------------------------------------------------------------------------------------------
    @property
    def in_flight(self) -> int:
        return len(self._active)

    @property
    def queued(self) -> int:
        return sum(1 for w in self._waiters if not w.fut.done())

    @property
    def draining(self) -> bool:
        return self._draining

    def retry_after(self) -> int:
        """Seconds until a slot is likely free: the queue ahead of you, at the mean slot hold time."""
        ahead = self.queued + 1
        est = self._mean_hold * ahead / self.max_concurrency
        return int(min(60, max(1, math.ceil(est))))

    # -- admission ------------------------------------------------------------------------------------------------
    async def acquire(self, timeout: float | None = None, stop: asyncio.Future | None = None) -> Lease:
        """Wait for a slot; raise ``QueueFull`` / ``Draining`` at once, ``RequestTimedOut`` if the wait is too long,
        ``ClientGone`` when ``stop`` (the client's disconnect) completes while waiting."""
        if self._draining:
            self.on_event("rejected_draining")
            raise Draining()
        timeout = self.request_timeout if timeout is None else timeout
        now = time.monotonic()
        deadline = now + timeout if timeout else math.inf
        if len(self._active) < self.max_concurrency and not self.queued:
            return self._grant(now, deadline)
        if self.queued >= self.max_queue:
            self.on_event("rejected_overloaded")
            raise QueueFull(self.retry_after(), self.in_flight, self.queued)
        waiter = _Waiter(asyncio.get_running_loop().create_future(), deadline, now)
        self._waiters.append(waiter)
        self._idle.clear()
        try:
            wait = None if deadline == math.inf else max(0.0, deadline - now)
            watch = {waiter.fut} if stop is None else {waiter.fut, stop}
            await asyncio.wait(watch, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            self._forget(waiter)
            raise
        if not waiter.fut.done():
            self._forget(waiter)
            if stop is not None and stop.done():
                self.on_event("cancelled")
                raise ClientGone()
            self.on_event("timed_out")
            raise RequestTimedOut(timeout, "waiting for a free slot")
        lease = waiter.fut.result()
        if isinstance(lease, BaseException):
            raise lease
        return lease

    def _grant(self, now: float, deadline: float, queued_for: float = 0.0) -> Lease:
        lease = Lease(self, deadline, now, queued_for, asyncio.get_running_loop().create_future())
        self._active.add(lease)
        self._idle.clear()
        return lease

    def _forget(self, waiter: "_Waiter") -> None:
        """A waiter gave up (timeout, cancel): if it was granted meanwhile, hand the slot back."""
        try:
            self._waiters.remove(waiter)
        except ValueError:
            pass
        if waiter.fut.done() and not waiter.fut.cancelled():
            lease = waiter.fut.result()
            if isinstance(lease, Lease):
                lease.release()
        elif not waiter.fut.done():
            waiter.fut.cancel()
        self._check_idle()

    def _release(self, lease: Lease) -> None:
        self._active.discard(lease)
        held = time.monotonic() - lease.admitted_at
        self._mean_hold = 0.8 * self._mean_hold + 0.2 * held
        self._wake_next()
        self._check_idle()

    def _wake_next(self) -> None:
        while self._waiters and len(self._active) < self.max_concurrency:
            waiter = self._waiters.popleft()
            if waiter.fut.done():
                continue
            now = time.monotonic()
            waiter.fut.set_result(self._grant(now, waiter.deadline, now - waiter.since))

    def _check_idle(self) -> None:
        if not self._active and not self.queued:
            self._idle.set()

    # -- running a generation under a lease -----------------------------------------------------------------------
    async def stream(
        self, start: Callable[[], AsyncIterator[Any]], stop: asyncio.Future | None = None
    ) -> AsyncIterator[Any]:
        """Admit (may raise before the first item), then yield ``start()``'s items under the deadline.

        The slot is freed when the iteration ends, fails, is cancelled, the iterator is closed or ``stop`` completes
        (client disconnect → ``ClientGone``); the engine's iterator is always closed (``aclose``) so its generation
        stops.
        """
        lease = await self.acquire(stop=stop)
        return self.run(lease, start(), stop)

    async def run(
        self, lease: Lease, inner: AsyncIterator[Any], stop: asyncio.Future | None = None
    ) -> AsyncIterator[Any]:
        """Yield ``inner``'s items while ``lease`` holds; free everything on any exit.

        The deadline, the shutdown abort and ``stop`` are watched once for the whole stream (a timer and two
        callbacks), not per item: one that fires while the consumer waits for the next item cancels that wait
        (``Task.cancel``, taken back with ``uncancel`` as ``asyncio.timeout`` does) and the matching error is
        raised; one that fires while the consumer is busy with an item is raised when it asks for the next."""
        watch = _Watch(asyncio.current_task())
        loop = asyncio.get_running_loop()
        timer = None if lease.deadline == math.inf else loop.call_at(
            loop.time() + max(0.0, lease.remaining()), watch.fire, "timed_out")
        futures = [(lease.aborted, "aborted")] + ([(stop, "cancelled")] if stop is not None else [])
        callbacks = [(f, watch.on_done(why)) for f, why in futures]
        for f, cb in callbacks:
            f.add_done_callback(cb)
        finished = False
        try:
            while True:
                watch.check(self)
                watch.inside = True
                try:
                    item = await inner.__anext__()
                except StopAsyncIteration:
                    finished = True
                    return
                except asyncio.CancelledError:
                    if watch.reason is not None and watch.task is not None and watch.task.uncancel() == 0:
                        watch.check(self)
                    raise
                finally:
                    watch.inside = False
                yield item
        except asyncio.CancelledError:  # the consuming task was cancelled: the client went away
            if not finished:
                self.on_event("cancelled")
            raise
        finally:
            lease.release()  # first, and synchronously: the slot is free even if the awaits below are cancelled
            if timer is not None:
                timer.cancel()
            for f, cb in callbacks:
                f.remove_done_callback(cb)
            await _aclose(inner)

    # -- shutdown -------------------------------------------------------------------------------------------------
    def start_draining(self) -> None:
        self._draining = True

    async def drain(self, timeout: float) -> bool:
        """Refuse new requests; wait up to ``timeout`` for admitted ones; abort the rest. True if all finished."""
        self.start_draining()
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
            return True
        except asyncio.TimeoutError:
            pass
        for waiter in list(self._waiters):
            if not waiter.fut.done():
                waiter.fut.set_result(Aborted())
        self._waiters.clear()
        for lease in list(self._active):
            if not lease.aborted.done():
                lease.aborted.set_result(None)
        try:
            await asyncio.wait_for(self._idle.wait(), 2.0)
        except asyncio.TimeoutError:
            pass
        return False


class _Watch:
    """What stops a running stream (``Scheduler.run``): the first reason that fires, and the task to interrupt."""

    def __init__(self, task: asyncio.Task | None) -> None:
        self.task = task
        self.reason: str | None = None
        self.inside = False  # the consumer is waiting for the engine's next item

    def fire(self, reason: str) -> None:
        if self.reason is None:
            self.reason = reason
            if self.inside and self.task is not None:
                self.task.cancel()

    def on_done(self, reason: str) -> Callable[[asyncio.Future], None]:
        return lambda fut: self.fire(reason)

    def check(self, scheduler: "Scheduler") -> None:
        """Raise the error of the reason that fired (and count it), if one did."""
        reason = self.reason
        if reason is None:
            return
        scheduler.on_event(reason)
        if reason == "aborted":
            raise Aborted()
        if reason == "cancelled":
            raise ClientGone()
        raise RequestTimedOut(scheduler.request_timeout or 0.0, "generating")


async def _aclose(inner: Any) -> None:
    close = getattr(inner, "aclose", None)
    if close is None:
        return
    try:
        await asyncio.wait_for(close(), 2.0)
    except BaseException:  # noqa: BLE001 - closing a generator that already failed
        pass


__all__ = [
    "Aborted",
    "ClientGone",
    "Draining",
    "Lease",
    "QueueFull",
    "RequestTimedOut",
    "Scheduler",
    "SchedulerError",
]
