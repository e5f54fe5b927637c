"""Supervise one long-running child server (``vllm serve``): start, health, bounded restarts, clean stop.

- ``start()`` spawns the child in its own process group and polls its health URL (through ``uds``, the child's Unix
  socket, when given) until it answers 200, the child
  exits (``ChildFailed`` with its exit code and last output line) or ``start_timeout`` passes (the child is stopped,
  then ``ChildFailed``).
- Once healthy, a monitor task waits for the child to exit — or to stop answering its health URL
  ``liveness_failures`` times in a row, in which case it is killed. Either way it is restarted, at most
  ``max_restarts`` times over the supervisor's life; after that the supervisor gives up, marks itself ``failed`` and
  calls ``on_failure(reason)`` once, so the server can exit cleanly instead of answering 503 forever.
- ``stop()`` sends SIGTERM to the child's process group (vLLM's workers included), waits ``stop_grace`` seconds,
  then sends SIGKILL.

The child's stdout and stderr are merged and passed line by line to ``on_output`` (the last lines are kept for error
messages). Pure asyncio + httpx; no globals.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import signal
from typing import Awaitable, Callable, Mapping, Sequence

import httpx

log = logging.getLogger("gptoss.serve.supervisor")


class ChildFailed(Exception):
    """The child could not be brought up (exited, or never became healthy)."""


class ChildSupervisor:
    def __init__(
        self,
        argv: Sequence[str],
        env: Mapping[str, str] | None,
        health_url: str,
        *,
        start_timeout: float = 1800.0,
        max_restarts: int = 2,
        stop_grace: float = 30.0,
        poll_interval: float = 0.5,
        restart_backoff: float = 2.0,
        liveness_interval: float = 15.0,
        liveness_failures: int = 4,
        on_failure: Callable[[str], None] | None = None,
        on_output: Callable[[str], None] | None = None,
        before_restart: Callable[[], Awaitable[None]] | None = None,
        on_healthy: Callable[[], None] | None = None,
        uds: str | None = None,
        name: str = "child",
        tail_lines: int = 40,
    ) -> None:
        self.argv = list(argv)
        self.env = dict(env) if env is not None else None
        self.health_url = health_url
        self.start_timeout = start_timeout
        self.max_restarts = max_restarts
        self.stop_grace = stop_grace
        self.poll_interval = poll_interval
        self.restart_backoff = restart_backoff
        self.liveness_interval = liveness_interval
        self.liveness_failures = liveness_failures
        self.name = name
        self.state = "stopped"  # stopped | starting | healthy | restarting | failed
        self.restarts = 0
        self.failure: str | None = None
        self.tail: collections.deque[str] = collections.deque(maxlen=tail_lines)
        self.on_failure = on_failure
        self.before_restart = before_restart  # e.g. drop pooled connections to the dead child
        self.on_healthy = on_healthy  # called each time the child (re)starts answering
        self.uds = uds  # the child's Unix socket: the health URL is requested through it
        self._on_output = on_output or (lambda line: log.info("%s", line))
        self._proc: asyncio.subprocess.Process | None = None
        self._pump_task: asyncio.Task[None] | None = None
        self._monitor_task: asyncio.Task[None] | None = None
        self._stopping = False
        self._client: httpx.AsyncClient | None = None

    # ------------------------------------------------------------------------------------------------ public

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def healthy(self) -> bool:
        return self.state == "healthy" and self._proc is not None and self._proc.returncode is None

    async def start(self) -> None:
        """Bring the child up and start watching it; ``ChildFailed`` when it cannot be brought up."""
        self._stopping = False
        await self._launch()
        self._monitor_task = asyncio.create_task(self._monitor(), name=f"{self.name}-supervisor")

    async def probe(self, timeout: float = 2.0) -> bool:
        """Whether the health URL answers 200 right now."""
        if self._client is None:
            transport = httpx.AsyncHTTPTransport(uds=self.uds) if self.uds else None
            self._client = httpx.AsyncClient(trust_env=False, transport=transport)
        try:
            resp = await self._client.get(self.health_url, timeout=timeout)
        except httpx.HTTPError:
            return False
        return resp.status_code == 200

    async def stop(self) -> None:
        """Stop watching and stop the child (SIGTERM to its group, SIGKILL after the grace period)."""
        self._stopping = True
        task, self._monitor_task = self._monitor_task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            try:
                await task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 - stopping regardless
                pass
        await self._terminate()
        if self.state != "failed":
            self.state = "stopped"
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    # ---------------------------------------------------------------------------------------------- internals

    async def _launch(self) -> None:
        self.state = "starting"
        try:
            self._proc = await asyncio.create_subprocess_exec(
                *self.argv, env=self.env, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT, start_new_session=True, limit=1 << 20,
            )
        except OSError as exc:
            self.state = "failed"
            raise ChildFailed(f"could not start {self.name}: {exc.strerror or exc}") from None
        self._pump_task = asyncio.create_task(self._pump(self._proc), name=f"{self.name}-output")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.start_timeout
        proc = self._proc
        while True:
            if await self.probe():
                self.state = "healthy"
                log.info("%s is healthy (pid %s)", self.name, proc.pid)
                if self.on_healthy is not None:
                    self.on_healthy()
                return
            if proc.returncode is not None:
                await self._drain_output()
                self.state = "starting-failed"
                raise ChildFailed(f"{self.name} exited with code {proc.returncode} while starting{self._last()}")
            if loop.time() >= deadline:
                await self._terminate()
                self.state = "starting-failed"
                raise ChildFailed(f"{self.name} did not become healthy within {self.start_timeout:g} s"
                                  f"{self._last()}")
            try:
                await asyncio.wait_for(proc.wait(), timeout=min(self.poll_interval, max(0.0, deadline - loop.time())))
            except asyncio.TimeoutError:
                pass

    async def _monitor(self) -> None:
        while not self._stopping:
            reason = await self._watch()
            if self._stopping:
                return
            self.restarts += 1
            if self.restarts > self.max_restarts:
                self._give_up(f"{reason}; gave up after {self.max_restarts} restart(s)")
                return
            log.warning("%s: %s; restarting (%d of %d)", self.name, reason, self.restarts, self.max_restarts)
            self.state = "restarting"
            await self._drop_connections()
            await asyncio.sleep(self.restart_backoff)
            if self._stopping:
                return
            try:
                await self._launch()
            except ChildFailed as exc:
                log.warning("%s", exc)

    async def _watch(self) -> str:
        """Return when the child has exited (or was killed for not answering), with the reason."""
        proc = self._proc
        assert proc is not None
        misses = 0
        while proc.returncode is None:
            try:
                await asyncio.wait_for(proc.wait(), timeout=self.liveness_interval)
            except asyncio.TimeoutError:
                if self.state != "healthy" or await self.probe():
                    misses = 0
                    continue
                misses += 1
                if misses >= self.liveness_failures:
                    await self._terminate()
                    return f"{self.name} stopped answering its health check"
        await self._drain_output()
        return f"{self.name} exited with code {proc.returncode}{self._last()}"

    async def _drop_connections(self) -> None:
        """Close every kept-alive connection to the dead child: half-closed sockets on its port would otherwise stop
        the new child from binding it ("Address already in use")."""
        if self._client is not None:
            await self._client.aclose()
            self._client = None
        if self.before_restart is not None:
            try:
                await self.before_restart()
            except Exception:  # noqa: BLE001 - best effort
                log.exception("%s: closing old connections failed", self.name)

    def _give_up(self, reason: str) -> None:
        self.state = "failed"
        self.failure = reason
        log.error("%s", reason)
        if self.on_failure is not None:
            self.on_failure(reason)

    async def _terminate(self) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.returncode is None:
            self._signal(proc, signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), timeout=self.stop_grace)
            except asyncio.TimeoutError:
                log.warning("%s ignored SIGTERM for %g s; sending SIGKILL", self.name, self.stop_grace)
                self._signal(proc, signal.SIGKILL)
                await proc.wait()
        else:
            self._signal(proc, signal.SIGKILL)  # stragglers left in its process group
        await self._drain_output()

    @staticmethod
    def _signal(proc: asyncio.subprocess.Process, sig: int) -> None:
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            try:
                proc.send_signal(sig)
            except ProcessLookupError:
                pass

    async def _pump(self, proc: asyncio.subprocess.Process) -> None:
        stream = proc.stdout
        if stream is None:
            return
        while True:
            try:
                raw = await stream.readline()
            except ValueError:  # a line longer than the limit (progress bars): take what is there
                raw = await stream.read(1 << 16)
            if not raw:
                return
            line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
            self.tail.append(line)
            self._on_output(f"{self.name} | {line}")

    async def _drain_output(self) -> None:
        task = self._pump_task
        if task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(task), timeout=2.0)
            except (asyncio.TimeoutError, Exception):  # noqa: BLE001 - output is best effort
                pass

    def _last(self) -> str:
        for line in reversed(self.tail):
            if line.strip():
                return f" (last output: {line.strip()[:300]})"
        return ""


__all__ = ["ChildFailed", "ChildSupervisor"]
