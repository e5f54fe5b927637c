"""Turn command-line strings into typed values without pydantic.

Typer (>= 0.2x) builds a pydantic ``TypeAdapter`` for every non-flag parameter the first time it parses one, and
importing pydantic is most of a short command's start-up (~0.1 s of ``gptoss verify``). The parameters gptoss
declares are plain: ``str``, ``int``/``float`` (with ``min``/``max``), ``bool``, ``Path``, ``Literal``/``Enum``
choices, and lists of those. For exactly these, the ``PlainCommand`` / ``PlainGroup`` classes give each parameter
a converter that needs no pydantic and answers with the same values and messages (``tests/test_cli_startup.py``
compares the two on every parameter of the real app). Anything else keeps Typer's own converter. The option
definitions stay where they are — the typed signatures of the command functions — and nothing is parsed by hand.
This leans on Typer's ``_TyperParameter._runtime_param`` hook; with a Typer without it, nothing changes here.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Callable, Optional, get_args, get_origin

import typer
from typer.core import TyperCommand, TyperGroup

Convert = Callable[[Any, Any, Any], Any]  # (value, param, ctx) -> value; raises ValueError

_TRUE = {"1", "true", "t", "yes", "y", "on"}
_FALSE = {"0", "false", "f", "no", "n", "off"}


def _to_str(value: Any, param: Any, ctx: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _to_bool(value: Any, param: Any, ctx: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE or text == "":
        return False
    raise ValueError("Input should be a valid boolean, unable to interpret input")


_INT = re.compile(r"[+-]?[0-9]+(?:_[0-9]+)*(?:\.0*)?")  # pydantic's lax int: "1_000" and "2.0" pass, "1.5" not


def _number(kind: type, minimum: Any, maximum: Any, clamp: bool) -> Convert:
    what = "a valid integer, unable to parse string as an integer" if kind is int else \
        "a valid number, unable to parse string as a number"

    def parse(value: Any) -> Any:
        if isinstance(value, kind) and not isinstance(value, bool):
            return value
        text = str(value).strip()
        try:
            if kind is int:
                if not _INT.fullmatch(text):
                    raise ValueError(text)
                return int(text.split(".")[0])
            return float(text)
        except ValueError:
            raise ValueError(f"Input should be {what}") from None

    def convert(value: Any, param: Any, ctx: Any) -> Any:
        number = parse(value)
        if clamp:
            if minimum is not None and number < minimum:
                return kind(minimum)
            if maximum is not None and number > maximum:
                return kind(maximum)
            return number
        if minimum is not None and not number >= minimum:  # "not >=": NaN is out of every range
            raise ValueError(f"Input should be greater than or equal to {minimum}")
        if maximum is not None and not number <= maximum:
            raise ValueError(f"Input should be less than or equal to {maximum}")
        return number

    return convert


def _choice(choices: tuple[Any, ...], case_sensitive: bool) -> Convert:
    from typer._param_types import coerce_cli_choice

    def convert(value: Any, param: Any, ctx: Any) -> Any:
        return coerce_cli_choice(value, choices=choices, case_sensitive=case_sensitive, ctx=ctx)

    return convert


def _path(annotation: Any, info: Any) -> Optional[Convert]:
    from typer._param_types import coerce_cli_path

    path_type = info.path_type
    if path_type is None and isinstance(annotation, type) and issubclass(annotation, Path):
        path_type = annotation
    if path_type is not None and not (isinstance(path_type, type) and issubclass(path_type, (Path, str, bytes))):
        return None

    def convert(value: Any, param: Any, ctx: Any) -> Any:
        if isinstance(path_type, type) and issubclass(path_type, Path) and not isinstance(value, path_type):
            if not isinstance(value, (str, os.PathLike)):
                raise ValueError("Input is not a valid path")
            value = path_type(value)  # what pydantic's Path adapter does, without pydantic
        return coerce_cli_path(value, info, path_type=path_type, param=param, ctx=ctx)

    return convert


def _leaf(annotation: Any, info: Any) -> Optional[Convert]:
    from typer._param_types import choice_coercion_annotation, routes_to_path

    if annotation is str:
        return _to_str
    if annotation is bool:
        return _to_bool
    if annotation in (int, float):
        return _number(annotation, info.min, info.max, bool(info.clamp))
    choice = choice_coercion_annotation(annotation, info)
    if choice is not None:
        if isinstance(annotation, type) and issubclass(annotation, Enum):
            return None  # enum members: keep Typer's converter (none of ours is an Enum)
        return _choice(*choice)
    if routes_to_path(annotation, info):
        return _path(annotation, info)
    return None


def plain_converter(descriptor: Any) -> Optional[tuple[Convert, bool]]:
    """``(convert, is_list)`` for a Typer type descriptor, or ``None`` when Typer's own converter must be used."""
    info = descriptor.parameter_info
    if descriptor.file_annotation is not None or info.parser is not None:
        return None
    annotation = descriptor.annotation
    if get_origin(annotation) is list:
        (item,) = get_args(annotation)
        leaf = _leaf(item, info)
        return None if leaf is None else (leaf, True)
    leaf = _leaf(annotation, info)
    return None if leaf is None else (leaf, False)


def _runtime_param_class() -> Optional[type]:
    try:
        from typer._coercion import RuntimeParam
    except ImportError:  # another Typer layout (older Typer used click types and no pydantic at all)
        return None

    @dataclass(frozen=True)
    class PlainRuntimeParam(RuntimeParam):  # type: ignore[misc, valid-type]
        convert: Convert = _to_str
        is_list: bool = False

        def _coerce_value(self, value: Any, param: Any, ctx: Any) -> Any:
            try:
                if self.is_list:
                    items = value if isinstance(value, (list, tuple)) else [value]
                    return [self.convert(item, param, ctx) for item in items]
                return self.convert(value, param, ctx)
            except ValueError as exc:
                raise typer.BadParameter(str(exc), ctx=ctx, param=param) from None

    return PlainRuntimeParam


_RUNTIME_PARAM: Any = None


def plain_coercion(command: Any, ctx: Any = None) -> Any:
    """Give every plain parameter of ``command`` a pydantic-free converter (with ``ctx``: its help option too)."""
    global _RUNTIME_PARAM
    if _RUNTIME_PARAM is None:
        _RUNTIME_PARAM = _runtime_param_class() or False
    if _RUNTIME_PARAM is False:
        return command
    for param in (command.get_params(ctx) if ctx is not None else command.params):
        if getattr(param, "_runtime_param", False) is not None or not hasattr(param, "type_descriptor"):
            continue  # already built, or not a Typer parameter
        found = plain_converter(param.type_descriptor)
        if found is not None:
            param._runtime_param = _RUNTIME_PARAM(parameter_info=param.type_descriptor.parameter_info,
                                                  annotation=param.type_descriptor.annotation,
                                                  convert=found[0], is_list=found[1])
    return command


class PlainCommand(TyperCommand):
    """A Typer command whose plain parameters are converted without pydantic (``cls=PlainCommand``)."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        plain_coercion(self, ctx)
        return super().parse_args(ctx, args)


class PlainGroup(TyperGroup):
    """A Typer group whose own plain parameters are converted without pydantic (``cls=PlainGroup``)."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        plain_coercion(self, ctx)
        return super().parse_args(ctx, args)
