"""`gptoss verify` starts light: one command imported and built, no pydantic, no rich unless it draws a table.

Asserted on what the process imports (sys.modules), never on timing; `bench/verify_cli.py` measures the time.
The pydantic-free parameter converters (cli/_plain.py) are checked against Typer's own, parameter by parameter.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, get_args, get_origin

import pytest
import typer.main
from typer._click import Context

from gptoss_cli.cli import COMMANDS, app
from gptoss_cli.cli._plain import plain_coercion
from gptoss_cli.lockfile import Lock, LockedFile, ModelPin, write_lock
from gptoss_cli.verify import hash_file

OTHER_COMMANDS = sorted({spec.split(":")[0] for name, spec in COMMANDS.items() if name != "verify"})
PYDANTIC = ("pydantic", "pydantic_core", "typer._adapters")


def _tiny_dest(root: Path) -> Path:
    model = root / "model"
    model.mkdir(parents=True)
    (model / "config.json").write_text("{}\n")
    sha, _, _ = hash_file(model / "config.json")
    write_lock(root, Lock(code=None, model=ModelPin("hf", "org/tiny", "0" * 40, "https://huggingface.co"),
                          files=(LockedFile("config.json", 3, sha, "lfs"),)))
    return root


def _imports(argv: list[str]) -> tuple[int, set[str], str]:
    """Run the real entry point with ``argv`` in a fresh interpreter; its exit code, modules and stdout."""
    code = (
        "import json, sys\n"
        "from gptoss_cli.cli import main\n"
        f"sys.argv = ['gptoss', *{argv!r}]\n"
        "try:\n"
        "    main()\n"
        "    rc = 0\n"
        "except SystemExit as exc:\n"
        "    rc = exc.code or 0\n"
        "sys.stdout.flush()\n"
        "sys.stderr.write('\\nMODULES=' + json.dumps([rc, sorted(sys.modules)]) + '\\n')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "COLUMNS": "120"})
    line = [ln for ln in out.stderr.splitlines() if ln.startswith("MODULES=")][-1]
    rc, modules = json.loads(line[len("MODULES="):])
    return rc, set(modules), out.stdout


def _loaded(modules: set[str], names: tuple[str, ...] | list[str]) -> list[str]:
    return sorted(m for m in modules if any(m == n or m.startswith(n + ".") for n in names))


@pytest.mark.parametrize("argv", [["verify", "--help"], ["verify", "-h"]])
def test_verify_help_imports_neither_pydantic_nor_rich_nor_other_commands(argv):
    rc, modules, stdout = _imports(argv)
    assert rc == 0 and "--strict" in stdout
    assert _loaded(modules, PYDANTIC) == []
    assert _loaded(modules, ["rich"]) == []
    assert _loaded(modules, OTHER_COMMANDS) == []


@pytest.mark.parametrize("argv", [["verify", "--json", "{dest}"], ["--json", "verify", "{dest}"]])
def test_verify_json_run_imports_neither_pydantic_nor_rich(tmp_path, argv):
    dest = _tiny_dest(tmp_path / "dest")
    rc, modules, stdout = _imports([a.format(dest=dest) for a in argv])
    assert rc == 0 and json.loads(stdout)["ok"] is True
    assert _loaded(modules, PYDANTIC) == []
    assert _loaded(modules, ["rich"]) == []
    assert _loaded(modules, OTHER_COMMANDS) == []


def test_verify_run_with_a_table_imports_no_pydantic(tmp_path):
    dest = _tiny_dest(tmp_path / "dest")
    rc, modules, stdout = _imports(["verify", str(dest)])
    assert rc == 0 and "config.json" in stdout and "all files match" in stdout
    assert _loaded(modules, PYDANTIC) == []
    assert _loaded(modules, ["rich"]) == []  # piped: plain columns, nothing drawn, no rich to import
    assert _loaded(modules, OTHER_COMMANDS) == []


def test_bad_value_is_still_a_usage_error_without_pydantic(tmp_path):
    rc, modules, _ = _imports(["verify", "--jobs", "many", str(tmp_path)])
    assert rc == 2
    assert _loaded(modules, PYDANTIC) == []


def test_help_lists_every_command_in_order():
    group = typer.main.get_command(app)
    assert list(group.commands) == list(COMMANDS)
    ctx = Context(group, info_name="gptoss")
    assert group.list_commands(ctx) == list(COMMANDS)
    assert all(group.get_command(ctx, name) is not None for name in COMMANDS)
    assert group.get_command(ctx, "no-such-command") is None


# -- the converters agree with Typer's own (pydantic) ones --------------------------------------------------------

_SAMPLES: dict[Any, list[Any]] = {
    str: ["abc", "", " spaced ", "ünï"],
    int: ["0", "1", "7", " 8 ", "-1", "+3", "1_000", "2.0", "1.5", "x", "", "1e3"],
    float: ["0", "0.5", "2", " 3 ", "-1", "1e3", "inf", "nan", "x", ""],
    bool: ["true", "False", "1", "0", "yes", "no", "on", "off", "", "maybe"],
}


def _samples(annotation: Any, tmp_path: Path) -> list[Any]:
    if annotation in _SAMPLES:
        return _SAMPLES[annotation]
    if get_args(annotation):  # Literal
        return [*get_args(annotation), "nope", ""]
    existing = tmp_path / "exists.txt"
    existing.write_text("x")
    return ["some/where", str(existing), str(tmp_path), ".", "", "-"]


def _outcome(runtime: Any, value: Any, param: Any, ctx: Any) -> tuple[str, Any]:
    try:
        return "ok", repr(runtime._coerce_value(value, param=param, ctx=ctx))  # repr: nan == nan
    except typer.BadParameter as exc:  # pydantic prefixes a validator's ValueError with "Value error, ": ours not
        return "error", exc.message.removeprefix("Value error, ")


def _every_param() -> list[tuple[str, Any, Any]]:
    group = typer.main.get_command(app)
    found = [("gptoss", group, p) for p in group.params]
    for name in COMMANDS:
        command = group.commands[name]
        subs = list(getattr(command, "commands", {}).values()) or [command]
        found += [(f"{name} {sub.name}" if sub is not command else name, sub, p) for sub in subs for p in sub.params]
    return found


def test_plain_converters_agree_with_typer_on_every_parameter(tmp_path):
    from typer._coercion import build_runtime_param

    checked = 0
    for where, command, param in _every_param():
        plain_coercion(command)
        plain = getattr(param, "_runtime_param", None)
        if plain is None:
            continue  # not a plain parameter: Typer's own converter is used
        typer_own = build_runtime_param(param.type_descriptor)
        assert type(typer_own).__name__ == "AdapterRuntimeParam"  # the pydantic one, built the way Typer does
        annotation = param.type_descriptor.annotation
        is_list = get_origin(annotation) is list
        ctx = Context(command, info_name="gptoss")
        for sample in _samples(get_args(annotation)[0] if is_list else annotation, tmp_path):
            value = [sample] if is_list else sample
            assert _outcome(plain, value, param, ctx) == _outcome(typer_own, value, param, ctx), \
                f"{where} {param.name}={sample!r}"
            checked += 1
    assert checked > 200  # every command's parameters took part
