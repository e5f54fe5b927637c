"""The one error boundary: exceptions → one line on stderr + the documented exit code.

    GptossError subclasses  → their own ``exit_code`` (1 problems, 2 usage, 3 could not run)
    KeyboardInterrupt       → 130, no traceback
    anything else           → 3, "internal error" (traceback only with GPTOSS_DEBUG=1)
"""

from __future__ import annotations

import functools
import sys
import traceback
from typing import Any, Callable, TypeVar

import typer

from gptoss_cli.config import debug_enabled
from gptoss_cli.errors import EXIT_COULD_NOT_RUN, EXIT_INTERRUPTED, GptossError

F = TypeVar("F", bound=Callable[..., Any])


def _say(message: str) -> None:
    sys.stderr.write(f"gptoss: error: {message}\n")
    sys.stderr.flush()


def exit_code_for(exc: BaseException) -> int:
    if isinstance(exc, GptossError):
        return exc.exit_code
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    return EXIT_COULD_NOT_RUN


def report(exc: BaseException) -> int:
    """Print one line for ``exc`` (traceback too under GPTOSS_DEBUG=1) and return its exit code."""
    if debug_enabled():
        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
    if isinstance(exc, GptossError):
        _say(exc.one_line())
    elif isinstance(exc, KeyboardInterrupt):
        sys.stderr.write("gptoss: interrupted\n")
    else:
        detail = " ".join(str(exc).split()) or type(exc).__name__
        _say(f"internal error: {type(exc).__name__}: {detail} (set GPTOSS_DEBUG=1 for the traceback)")
    return exit_code_for(exc)


def _is_framework_exception(exc: BaseException) -> bool:
    return type(exc).__module__.split(".")[0] in {"click", "typer"}


def boundary(fn: F) -> F:
    """Decorate every command with this: it is where errors become exit codes."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort):
            raise
        except (GptossError, KeyboardInterrupt) as exc:
            raise typer.Exit(report(exc)) from None
        except Exception as exc:  # noqa: BLE001 - the boundary is the one place allowed to catch everything
            if _is_framework_exception(exc):
                raise  # typer/click usage errors keep their own handling (exit 2)
            raise typer.Exit(report(exc)) from None

    return wrapper  # type: ignore[return-value]
