"""Output helpers: results to stdout (rich for people, one JSON document with --json), diagnostics to stderr.

Levels (``-q`` / ``-v``): ``quiet`` drops progress and info lines (results, warnings and errors stay), ``verbose``
adds detail lines. Tables never elide text when stdout is not a terminal (the console is made wide enough), and
with ``--no-truncate`` they fold long cells instead of cutting them on a terminal too.

With --json the result is not written at once: the error boundary writes one envelope when the command ends,

    {"schema": "gptoss.<command>/1", "ok": bool, "exit_code": int, <the result's keys>...,
     "error": {"type", "message", "hint"}}            # "error" only on failure

so a failure after the result (verify mismatch, audit findings) and a failure before it both give one document.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import enum
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional

from gptoss_cli.config import Secret, no_color

if TYPE_CHECKING:
    from rich.console import Console

QUIET, NORMAL, VERBOSE = "quiet", "normal", "verbose"
WIDE = 100_000  # the console width when nothing may be truncated: tables take their natural width
SCHEMA_VERSION = 1


def to_jsonable(value: Any) -> Any:
    """Convert result objects (frozen dataclasses, paths, secrets, enums, datetimes) into JSON-ready data."""
    if isinstance(value, Secret):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        if hasattr(value, "to_dict"):
            return to_jsonable(value.to_dict())
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (_dt.datetime, _dt.date)):
        return value.isoformat()
    return value


def schema_name(command: str) -> str:
    """``"fetch"`` → ``gptoss.fetch/1``; ``"config show"`` → ``gptoss.config-show/1``; ``""`` → ``gptoss/1``."""
    name = "-".join(command.split())
    return f"gptoss.{name}/{SCHEMA_VERSION}" if name else f"gptoss/{SCHEMA_VERSION}"


def envelope(command: str, exit_code: int, result: Any = None, error: Optional[dict[str, Any]] = None,
             **extra: Any) -> dict[str, Any]:
    """The one --json document: the result's own keys plus ``schema``, ``ok``, ``exit_code`` (and ``error``)."""
    data = to_jsonable(result) if result is not None else {}
    doc: dict[str, Any] = {"schema": schema_name(command), **extra}
    doc.update(data if isinstance(data, dict) else {"result": data})
    doc.update({"schema": schema_name(command), "ok": exit_code == 0, "exit_code": exit_code})
    if error is not None:
        doc["error"] = error
    return doc


def write_json(doc: dict[str, Any], *, compact: bool = False) -> None:
    text = json.dumps(doc, ensure_ascii=False, sort_keys=not compact, indent=None if compact else 2)
    try:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
    except BrokenPipeError:  # the reader is gone (e.g. Ctrl-C reached both ends of a pipe)
        pass


class Output:
    """Where a command writes: ``out`` (stdout, results) and ``err`` (stderr, progress and diagnostics)."""

    def __init__(self, json_mode: bool = False, *, level: str = NORMAL, no_truncate: bool = False,
                 command: str = "") -> None:
        self.json_mode = json_mode
        self.level = level
        self.command = command
        self.fold = no_truncate  # on a terminal: fold long cells instead of eliding them
        self.pending: Any = None  # the result, written inside the envelope when the command ends (--json)
        self.streamed = False  # serve --json writes one JSON line per event instead of one document
        self._consoles: dict[str, Console] = {}

    @property
    def quiet(self) -> bool:
        return self.level == QUIET

    @property
    def verbose(self) -> bool:
        return self.level == VERBOSE

    @property
    def truncate(self) -> bool:
        """Elide long cells: only on a terminal, and not with --no-truncate."""
        return not self.fold and self.out.is_terminal

    @property
    def out_is_terminal(self) -> bool:
        return self._is_terminal("out")

    @property
    def err_is_terminal(self) -> bool:
        return self._is_terminal("err")

    def _is_terminal(self, which: str) -> bool:
        """Whether stdout/stderr is a terminal, without making the rich console when it does not exist yet."""
        if which in self._consoles:
            return self._consoles[which].is_terminal
        try:
            return (sys.stdout if which == "out" else sys.stderr).isatty()
        except (AttributeError, ValueError):
            return False

    @property
    def out(self) -> Console:
        return self._console("out")

    @out.setter
    def out(self, console: Console) -> None:
        self._consoles["out"] = console

    @property
    def err(self) -> Console:
        return self._console("err")

    @err.setter
    def err(self, console: Console) -> None:
        self._consoles["err"] = console

    def _console(self, which: str) -> Console:
        """Made on first use: rich costs ~30 ms of start-up, and --help or --json output never needs it."""
        if which not in self._consoles:
            from rich.console import Console

            stream = sys.stdout if which == "out" else sys.stderr
            console = Console(file=stream, no_color=no_color(), highlight=False, soft_wrap=True)
            if which == "out" and not console.is_terminal:
                console.width = WIDE  # piped: tables keep whole ids, paths and hashes
            self._consoles[which] = console
        return self._consoles[which]

    def result(self, data: Any, human: Callable[[Console], None] | None = None) -> None:
        """The command's result: kept for the --json envelope (written by the boundary), else rendered now."""
        if self.json_mode:
            self.pending = data
        elif human is None:  # no human rendering: the plain result document
            write_json(to_jsonable(data))
        else:
            human(self.out)

    def event(self, name: str, **data: Any) -> None:
        """One JSON line on stdout (``serve --json``): ``{"schema", "event", ...}``."""
        self.streamed = True
        write_json({"schema": schema_name(self.command), "event": name, **to_jsonable(data)}, compact=True)

    def finish(self, exit_code: int, error: Optional[dict[str, Any]] = None) -> None:
        """Write the --json envelope (once); nothing in human mode."""
        if not self.json_mode:
            return
        self.json_mode = False  # once only
        if self.streamed:
            write_json(envelope(self.command, exit_code, None, error, event="exit"), compact=True)
        else:
            write_json(envelope(self.command, exit_code, self.pending, error))

    def table(self, *columns: str, title: Optional[str] = None, **kwargs: Any) -> Any:
        """A rich Table whose cells are never elided when truncation is off (piped output or --no-truncate)."""
        from rich.table import Table

        table = Table(title=title, **kwargs)
        for name in columns:
            table.add_column(name, overflow="fold" if self.fold else "ellipsis")
        return table

    def short(self, text: str, keep: int) -> str:
        """``text`` cut to ``keep`` characters + "…" on a terminal; whole when truncation is off."""
        return text[:keep] + "…" if self.truncate and len(text) > keep else text

    def info(self, message: str) -> None:
        if not self.quiet:
            self.err.print(message, markup=False)

    def detail(self, message: str) -> None:
        """A line for ``-v`` only."""
        if self.verbose:
            self.err.print(message, markup=False)

    def warn(self, message: str) -> None:
        self.err.print(f"gptoss: warning: {message}", style="yellow", markup=False)

    def error(self, message: str) -> None:
        self.err.print(f"gptoss: error: {message}", style="red", markup=False)
