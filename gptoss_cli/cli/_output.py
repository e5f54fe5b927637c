"""Output helpers: results to stdout (rich for people, one JSON document with --json), diagnostics to stderr."""

from __future__ import annotations

import dataclasses
import datetime as _dt
import enum
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from gptoss_cli.config import Secret, no_color

if TYPE_CHECKING:
    from rich.console import Console


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


class Output:
    """Where a command writes: ``out`` (stdout, results) and ``err`` (stderr, progress and diagnostics)."""

    def __init__(self, json_mode: bool = False) -> None:
        self.json_mode = json_mode
        self._consoles: dict[str, Console] = {}

    @property
    def out(self) -> Console:
        return self._console("out")

    @property
    def err(self) -> Console:
        return self._console("err")

    def _console(self, which: str) -> Console:
        """Made on first use: rich costs ~30 ms of start-up, and --help or --json output never needs it."""
        if which not in self._consoles:
            from rich.console import Console

            stream = sys.stdout if which == "out" else sys.stderr
            self._consoles[which] = Console(file=stream, no_color=no_color(), highlight=False, soft_wrap=True)
        return self._consoles[which]

    def result(self, data: Any, human: Callable[[Console], None] | None = None) -> None:
        """Emit the command's result: exactly one JSON document with --json, else the human rendering."""
        if self.json_mode or human is None:
            sys.stdout.write(json.dumps(to_jsonable(data), indent=2, sort_keys=True, ensure_ascii=False) + "\n")
            sys.stdout.flush()
        else:
            human(self.out)

    def info(self, message: str) -> None:
        self.err.print(message, markup=False)

    def warn(self, message: str) -> None:
        self.err.print(f"gptoss: warning: {message}", style="yellow", markup=False)

    def error(self, message: str) -> None:
        self.err.print(f"gptoss: error: {message}", style="red", markup=False)
