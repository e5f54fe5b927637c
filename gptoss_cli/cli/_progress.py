"""Rendering of the core's progress callbacks on stderr, in one of three modes:

    bar     stderr is a terminal (no --json, no HF_HUB_DISABLE_PROGRESS_BARS): a rich bar, or a transient status
            line for step messages, gone when the command ends (the result says the rest once)
    lines   otherwise (CI logs, pipes, --json): plain lines, at most one per task every ``INTERVAL`` seconds
            (what, bytes so far of the total, rate, ETA), then one closing line; step messages as plain lines
    off     -q/--quiet

The core only calls the callbacks it was given; nothing here is imported until a command runs. ``clock`` is a
module attribute so tests can drive the throttling with a fake clock instead of sleeping.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any, Callable, Iterator, Optional

from gptoss_cli.cli._output import Output
from gptoss_cli.config import progress_bars_disabled

INTERVAL = 5.0  # seconds between two plain progress lines of one task
clock: Callable[[], float] = time.monotonic


def human_size(n: float) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(size) < 1000 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{n} B"  # pragma: no cover


def human_duration(seconds: float) -> str:
    s = max(0, int(round(seconds)))
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"


def progress_mode(out: Output) -> str:
    if out.quiet:
        return "off"
    if out.json_mode or progress_bars_disabled() or not out.err_is_terminal:
        return "lines"  # checked in this order: --json and piped runs never import rich for a bar
    return "bar"


class PlainProgress:
    """One task's throttled progress lines: one when ``interval`` seconds have passed since the start or the last
    line, then ``close()``'s closing line; a task done sooner writes nothing (its result says it all).
    ``unit`` is "bytes" (sizes, rate, ETA) or a word for counts ("objects")."""

    def __init__(self, label: str, write: Callable[[str], None], *, unit: str = "bytes",
                 interval: Optional[float] = None) -> None:
        self.label, self.write, self.unit = label, write, unit
        self.interval = INTERVAL if interval is None else interval
        self.note = ""
        self.done, self.total = 0, 0
        self._start: Optional[float] = None
        self._last: tuple[float, int] = (0.0, 0)  # (time, done) at the start or the last line written
        self.lines = 0

    def update(self, done: int, total: Optional[int]) -> None:
        now = clock()
        self.done, self.total = done, total or 0
        if self._start is None:
            self._start, self._last = now, (now, done)
        elif now - self._last[0] >= self.interval:
            seconds = now - self._last[0]
            self._line(now, (done - self._last[1]) / seconds if seconds > 0 else None)

    def close(self) -> None:
        """The closing line (how much, how long, the average rate), when a progress line was written."""
        if self._start is None or not self.lines:
            return
        elapsed = clock() - self._start
        rate = self.done / elapsed if elapsed > 0 and self.unit == "bytes" else None
        parts = [f"{self._amount(self.done, None)} in {human_duration(elapsed)}"]
        if rate:
            parts.append(f"{human_size(rate)}/s")
        if self.note:
            parts.append(self.note)
        self.write(f"gptoss: {self.label}: done, " + ", ".join(parts))

    def _amount(self, n: int, total: Optional[int]) -> str:
        if self.unit == "bytes":
            return human_size(n) + (f" of {human_size(total)}" if total else "")
        return f"{n}" + (f" of {total}" if total else "") + f" {self.unit}"

    def _line(self, now: float, rate: Optional[float]) -> None:
        self._last, self.lines = (now, self.done), self.lines + 1
        parts = [self._amount(self.done, self.total)]
        if self.total:
            parts[0] += f" ({100 * self.done // self.total}%)"
        if rate is not None and self.unit == "bytes":
            parts.append(f"{human_size(rate)}/s")
            if rate > 0 and self.total > self.done:
                parts.append(f"ETA {human_duration((self.total - self.done) / rate)}")
        if self.note:
            parts.append(self.note)
        self.write(f"gptoss: {self.label}: " + ", ".join(parts))


def _rich_columns() -> list[Any]:
    """Bytes, speed and ETA for byte tasks; ``n/m`` for counted ones (git objects)."""
    from rich.progress import (BarColumn, DownloadColumn, MofNCompleteColumn, ProgressColumn, TextColumn,
                               TimeRemainingColumn, TransferSpeedColumn)
    from rich.text import Text

    class ByUnit(ProgressColumn):
        def __init__(self, for_bytes: ProgressColumn, for_counts: Optional[ProgressColumn]) -> None:
            super().__init__()
            self.for_bytes, self.for_counts = for_bytes, for_counts

        def render(self, task: Any) -> Any:
            if task.fields.get("unit") == "bytes":
                return self.for_bytes.render(task)
            return self.for_counts.render(task) if self.for_counts else Text("")

    return [TextColumn("{task.description}"), BarColumn(), ByUnit(DownloadColumn(), MofNCompleteColumn()),
            ByUnit(TransferSpeedColumn(), None), ByUnit(TimeRemainingColumn(), None)]


class Tasks:
    """Progress of named tasks (``weights`` by bytes, ``git receiving`` by objects, …) in the output's mode."""

    def __init__(self, out: Output) -> None:
        self.out = out
        self.mode = progress_mode(out)
        self._rich: Any = None
        self._ids: dict[str, Any] = {}
        self._plain: dict[str, PlainProgress] = {}
        if self.mode == "bar":
            from rich.progress import Progress

            self._rich = Progress(*_rich_columns(), console=out.err, transient=True)

    def update(self, label: str, done: int, total: Optional[int], *, unit: str = "bytes") -> None:
        if self.mode == "off":
            return
        if self._rich is not None:
            if label not in self._ids:
                self._ids[label] = self._rich.add_task(label, total=total, unit=unit)
            self._rich.update(self._ids[label], completed=done, total=total)
            return
        if label not in self._plain:
            self._plain[label] = PlainProgress(label, self.out.info, unit=unit)
        self._plain[label].update(done, total)

    def note(self, label: str, text: str) -> None:
        """Extra words for a task ("2/3 files"): in its description (bar) or at the end of its lines."""
        if self._rich is not None and label in self._ids:
            self._rich.update(self._ids[label], description=f"{label} ({text})")
        elif label in self._plain:
            self._plain[label].note = text

    def __enter__(self) -> "Tasks":
        if self._rich is not None:
            self._rich.start()
        return self

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        if self._rich is not None:
            self._rich.stop()
        elif exc_type is None:
            for task in self._plain.values():
                task.close()


@contextlib.contextmanager
def byte_progress(out: Output, label: str) -> Iterator[Callable[[int, int], None]]:
    """One ``progress(done, total)`` callback by bytes (verify's hashing, serve's check)."""
    with Tasks(out) as tasks:
        yield lambda done, total: tasks.update(label, done, total)


@contextlib.contextmanager
def steps(out: Output) -> Iterator[Callable[[str], None]]:
    """A ``progress(message)`` callback for step messages ("preflight: …", "auditing …").

    On a terminal each message replaces the previous one on a transient status line, so what the final summary
    repeats is not printed twice; elsewhere (and with -v) each is a plain line on stderr; -q drops them.
    """
    mode = progress_mode(out)
    if mode == "off":
        yield lambda _message: None
        return
    if mode == "lines" or out.verbose:
        yield out.info
        return
    status = out.err.status("", spinner="dots")
    started = False

    def show(message: str) -> None:
        nonlocal started
        from rich.text import Text

        status.update(Text(message))
        if not started:
            status.start()
            started = True

    try:
        yield show
    finally:
        if started:
            status.stop()
