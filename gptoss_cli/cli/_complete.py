"""Shell completion: option values, and ``--show-completion SHELL`` / ``--install-completion``.

``offer(values)`` is an ``autocompletion=`` callback for an option whose values are a known set. ``values`` is a
tuple, or ``"module:NAME"`` naming the tuple the core validates against — imported only while completing, so
defining the option costs nothing and completion can never offer a value the command would refuse.

Typer's own ``--show-completion`` is a flag that guesses the shell from the parent process, so
``gptoss --show-completion zsh > _gptoss`` wrote whatever shell ran the command (or nothing useful in a script).
Here ``--show-completion`` takes the shell by name; the script printed is the one ``completions/`` holds.
"""

from __future__ import annotations

import importlib
from typing import Annotated, Callable, Literal, Optional, Union

import typer
import typer.completion

typer.completion.completion_init()  # registers Typer's bash/zsh/fish/powershell classes (add_completion=False skips it)

Shell = Literal["bash", "zsh", "fish", "powershell", "pwsh"]  # the shells Typer writes scripts for


def offer(values: Union[tuple[str, ...], str]) -> Callable[[str], list[str]]:
    """An ``autocompletion=`` callback offering ``values`` (a tuple, or ``"module:NAME"`` of one) that start with
    what was typed."""

    def complete(incomplete: str) -> list[str]:
        choices = values
        if isinstance(choices, str):
            module, _, name = choices.partition(":")
            choices = getattr(importlib.import_module(module), name)
        return [value for value in choices if value.startswith(incomplete)]

    return complete


ShowCompletionOpt = Annotated[Optional[Shell], typer.Option(
    "--show-completion", metavar="SHELL", callback=typer.completion.show_callback, expose_value=False,
    is_eager=True,
    help="Print the completion script for SHELL (bash, zsh, fish or powershell) and exit.")]
InstallCompletionOpt = Annotated[bool, typer.Option(
    "--install-completion", callback=typer.completion.install_callback, expose_value=False, is_eager=True,
    help="Install completion for the current shell and exit.")]
