"""Commands that are imported and built only when they are used.

The root group lists every command by name (``COMMANDS`` in ``gptoss_cli.cli``: ``"name": "module:attribute"``);
a command's module is imported, and its Click command built from the typed function signature, the first time
the group is asked for it. ``gptoss verify …`` therefore imports and builds ``verify`` alone, while ``gptoss
--help``, completion of command names and ``gptoss config show`` see the same commands as before. Commands are
built as ``_plain.PlainCommand``: their parameters are converted without pydantic.
"""

from __future__ import annotations

import importlib
from typing import Any, Iterator, Mapping, MutableMapping

import typer
import typer.main

from gptoss_cli.cli._plain import PlainCommand, PlainGroup


def build_command(name: str, spec: str) -> Any:
    """The Click command for ``spec`` (``"module:function"`` or ``"module:typer_app"``), named ``name``."""
    module_name, _, attribute = spec.partition(":")
    target = getattr(importlib.import_module(module_name), attribute)
    if isinstance(target, typer.Typer):  # a group: built with cls=PlainGroup / PlainCommand by its module
        command = typer.main.get_group(target)
    else:
        single = typer.Typer(add_completion=False, rich_markup_mode=None)
        single.command(name, cls=PlainCommand)(target)
        command = typer.main.get_command(single)
    command.name = name
    return command


class LazyCommands(MutableMapping[str, Any]):
    """``group.commands`` for a lazy group: names are known up front, commands are built on first access."""

    def __init__(self, specs: Mapping[str, str], built: MutableMapping[str, Any]) -> None:
        self._specs = dict(specs)
        self._built = built

    def __getitem__(self, name: str) -> Any:
        if name not in self._built:
            if name not in self._specs:
                raise KeyError(name)
            self._built[name] = build_command(name, self._specs[name])
        return self._built[name]

    def __setitem__(self, name: str, command: Any) -> None:
        self._built[name] = command

    def __delitem__(self, name: str) -> None:
        self._specs.pop(name, None)
        del self._built[name]

    def __iter__(self) -> Iterator[str]:
        return iter(dict.fromkeys([*self._specs, *self._built]))

    def __len__(self) -> int:
        return len(dict.fromkeys([*self._specs, *self._built]))

    def __contains__(self, name: object) -> bool:
        return name in self._specs or name in self._built


class LazyGroup(PlainGroup):
    """A Typer group whose commands come from ``lazy_commands`` (set by a subclass)."""

    lazy_commands: Mapping[str, str] = {}

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        self.commands = LazyCommands(self.lazy_commands, self.commands)

    def list_commands(self, ctx: Any) -> list[str]:
        return list(self.commands)  # names only: listing must not build every command

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        return self.commands.get(cmd_name)
