"""The Click that Typer runs on: Typer 0.29+ carries its own copy (``typer._click``), older Typer the click package.

Only what the CLI needs from it: the exception classes and the current context.
"""

from __future__ import annotations

try:
    from typer._click import exceptions
    from typer._click.globals import get_current_context
except ImportError:  # pragma: no cover - Typer that runs on the click package
    from click import exceptions  # type: ignore[no-redef]
    from click import get_current_context  # type: ignore[no-redef]

__all__ = ["exceptions", "get_current_context"]
