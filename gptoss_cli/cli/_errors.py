"""The one error boundary: exceptions → one line on stderr + the documented exit code (+ the --json envelope).

    GptossError subclasses  → their own ``exit_code`` (1 problems, 2 usage, 3 could not run)
    KeyboardInterrupt       → 130, no traceback
    anything else           → 3, "internal error" (traceback only with GPTOSS_DEBUG=1)
    click usage errors      → 2, one line with a suggestion (``run_main``), whatever Click would have printed

With --json the envelope (``_output``) carries the same error as ``{"type", "message", "hint"}``.
"""

from __future__ import annotations

import difflib
import functools
import re
import sys
import traceback
from typing import Any, Callable, Optional, TypeVar

import typer

from gptoss_cli.cli._click import exceptions, get_current_context
from gptoss_cli.config import debug_enabled
from gptoss_cli.errors import EXIT_COULD_NOT_RUN, EXIT_INTERRUPTED, EXIT_USAGE, GptossError

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


def _internal_detail(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def report(exc: BaseException) -> int:
    """Print one line for ``exc`` (traceback too under GPTOSS_DEBUG=1) and return its exit code."""
    if debug_enabled():
        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
    if isinstance(exc, GptossError):
        _say(exc.one_line())
    elif isinstance(exc, KeyboardInterrupt):
        sys.stderr.write("gptoss: interrupted\n")
    else:
        _say(f"internal error: {type(exc).__name__}: {_internal_detail(exc)} (set GPTOSS_DEBUG=1 for the traceback)")
    return exit_code_for(exc)


def error_info(exc: BaseException) -> dict[str, Optional[str]]:
    """The envelope's ``error``: its class in the documented tree (``UsageError``, ``NetworkError``, …), message
    and hint."""
    if isinstance(exc, GptossError):
        return {"type": _public_class(exc), "message": " ".join(exc.message.split()), "hint": exc.hint}
    if isinstance(exc, KeyboardInterrupt):
        return {"type": "Interrupted", "message": "interrupted", "hint": None}
    return {"type": "InternalError", "message": f"{type(exc).__name__}: {_internal_detail(exc)}",
            "hint": "set GPTOSS_DEBUG=1 for the traceback"}


def _public_class(exc: GptossError) -> str:
    """The nearest class of the documented tree in ``gptoss_cli.errors`` (``LockError`` → ``CouldNotRun``)."""
    return next(c.__name__ for c in type(exc).__mro__ if c.__module__ == GptossError.__module__)


def _is_framework_exception(exc: BaseException) -> bool:
    return type(exc).__module__.split(".")[0] in {"click", "typer"}


def _finish(exit_code: int, exc: Optional[BaseException] = None) -> None:
    """Write this invocation's --json envelope, if it has an Output in JSON mode."""
    from gptoss_cli.cli._options import AppState, output_for

    ctx = get_current_context(silent=True)
    if ctx is None or not isinstance(ctx.find_root().obj, AppState):
        return
    st = ctx.find_root().obj
    if st.output is None and not st.json:
        return
    output_for(ctx).finish(exit_code, error_info(exc) if exc is not None and exit_code else None)


def boundary(fn: F) -> F:
    """Decorate every command with this: it is where errors become exit codes."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            value = fn(*args, **kwargs)
        except typer.Exit as exc:
            _finish(exc.exit_code)
            raise
        except typer.Abort:
            raise
        except (GptossError, KeyboardInterrupt) as exc:
            code = report(exc)
            _finish(code, exc)
            raise typer.Exit(code) from None
        except Exception as exc:  # noqa: BLE001 - the boundary is the one place allowed to catch everything
            if _is_framework_exception(exc):
                raise  # click usage errors: one line from run_main (exit 2)
            code = report(exc)
            _finish(code, exc)
            raise typer.Exit(code) from None
        _finish(0)
        return value

    return wrapper  # type: ignore[return-value]


# -- usage errors (Click's parsing) -------------------------------------------------------------------------------

def run_main(call: Callable[[list[str]], Any], args: Any, standalone_mode: bool, root: Any = None) -> Any:
    """Run Click in non-standalone mode and turn its outcomes into our exit codes and one-line errors."""
    argv = [str(a) for a in (sys.argv[1:] if args is None else args)]
    try:
        value = call(argv)
        code = value if isinstance(value, int) and not isinstance(value, bool) else 0
    except exceptions.UsageError as exc:
        code = usage_failure(exc, argv, root)
    except typer.Abort:
        code = report(KeyboardInterrupt())
    except exceptions.ClickException as exc:  # e.g. a bad file argument: still one line
        _say(_sentence(exc.format_message()))
        code = exc.exit_code
    if standalone_mode:
        sys.exit(code)
    return code


def wants_json(argv: list[str]) -> bool:
    return "--json" in (argv[: argv.index("--")] if "--" in argv else argv)


def _path_in(root: Any, argv: list[str]) -> str:
    """The command path the words of ``argv`` name (for errors the parser raises without a context)."""
    path, group = ["gptoss"], root
    for word in (a for a in argv if not a.startswith("-")):
        sub = getattr(group, "commands", {}).get(word)
        if sub is None:
            break
        path.append(word)
        group = sub
    return " ".join(path)


def usage_failure(exc: Any, argv: list[str], root: Any = None) -> int:
    """One ``gptoss: error: …`` line for a usage error (and the envelope with --json); returns 2."""
    from gptoss_cli.cli._output import envelope, write_json

    ctx = exc.ctx
    path = ctx.command_path if ctx is not None else _path_in(root, argv)
    hint = f"see '{path} --help'"
    if isinstance(exc, getattr(exceptions, "NoArgsIsHelpError", ())):
        exc.show()  # the help text itself, as Click prints it
        message = "no command given"
    else:
        message = usage_message(exc, argv)
        _say(f"{message}; {hint}")
    if wants_json(argv):
        write_json(envelope(" ".join(path.split()[1:]), EXIT_USAGE, None,
                            {"type": "UsageError", "message": message, "hint": hint}))
    return EXIT_USAGE


def _sentence(text: str) -> str:
    """Click's "Error text." → "error text" (one line, no final stop, lower-case start unless an acronym)."""
    text = " ".join(text.split()).rstrip(".")
    if len(text) > 1 and text[0].isupper() and not text[1].isupper():
        text = text[0].lower() + text[1:]
    return text


def _close(word: str, choices: list[str]) -> list[str]:
    """Choices that start with ``word`` (``--dry`` → ``--dry-run``), else the near spellings of it."""
    bare = {c.lstrip("-"): c for c in choices}
    key = word.lstrip("-")
    prefixed = [c for b, c in bare.items() if key and b.startswith(key)]
    if prefixed:
        return prefixed[:3]
    return [bare[b] for b in difflib.get_close_matches(key, list(bare), n=3, cutoff=0.7)]


def _option_names(command: Any, ctx: Any) -> list[str]:
    return [o for p in command.get_params(ctx) if getattr(p, "param_type_name", "") == "option"
            for o in (*p.opts, *p.secondary_opts)]


def _is_group(command: Any) -> bool:
    return hasattr(command, "list_commands")


def usage_message(exc: Any, argv: list[str]) -> str:
    ctx = exc.ctx
    if ctx is None:
        return _sentence(exc.format_message())
    if isinstance(exc, exceptions.NoSuchOption):
        return _no_such_option(exc.option_name, ctx, argv)
    param = getattr(exc, "param", None)
    if isinstance(exc, exceptions.BadParameter) and not isinstance(exc, exceptions.MissingParameter) and param:
        is_option = getattr(param, "param_type_name", "") == "option"
        names = "/".join(param.opts) if is_option else param.human_readable_name
        return f"invalid value for {names}: {_sentence(exc.message)}"
    found = re.match(r"No such command '(.+?)'", exc.message)
    if found and _is_group(ctx.command):
        name = found.group(1)
        near = _close(name, ctx.command.list_commands(ctx))
        guess = f" (did you mean {' or '.join(repr(n) for n in near)}?)" if near else ""
        return f"no such command '{name}' for '{ctx.command_path}'{guess}"
    return _sentence(exc.format_message())


def _no_such_option(name: str, ctx: Any, argv: list[str]) -> str:
    path = ctx.command_path
    flag = name.split("=", 1)[0]
    near = _close(flag, _option_names(ctx.command, ctx))
    text = f"no such option {flag} for '{path}'"
    if near:
        return text + f" (did you mean {' or '.join(near)}?)"
    root = ctx.find_root()
    if ctx.parent is not None and flag in _option_names(root.command, root):
        return text + f" (it is an option of '{root.command_path}': give it before the command)"
    if _is_group(ctx.command):
        for word in argv:
            sub = ctx.command.get_command(ctx, word) if not word.startswith("-") else None
            if sub is not None and flag in _option_names(sub, ctx):
                return text + f" (it is an option of '{path} {word}': give it after the command)"
    return text
