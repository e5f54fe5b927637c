"""The package's shape, checked statically (``tests/arch_graph.py`` reads every file with ``ast``, imports nothing).

- no import cycle among module-level imports (a function-level or ``TYPE_CHECKING`` import may break one);
  outside ``serve/`` not even through function-level imports;
- the core (everything outside ``cli/``) never imports typer, click or rich, not even inside a function;
- the modules every ``gptoss`` start loads (``gptoss_cli``, ``gptoss_cli.cli``, config, errors) import nothing heavy
  at module level, directly or through the package modules they import; a fresh interpreter confirms it;
- modules stay small (≤ 400 lines everywhere; in ``serve/`` also functions ≤ 60 lines and a median ≤ 150);
- ``serve/harmony/`` is pure: the standard library and itself only;
- ``serve/``'s rooms depend downwards only: harmony < policy < engines < generation < openai.

Every check reports all of its violators at once.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests import arch_graph as g

UI = frozenset({"typer", "click", "rich"})
HEAVY = frozenset({"torch", "transformers", "fastapi", "starlette", "huggingface_hub", "git", "httpx", "pydantic",
                   "uvicorn", "prometheus_client"})
# DESIGN §2: these load only inside the functions that need them (httpx and pydantic are the core's own tools).
HEAVIEST = frozenset({"torch", "transformers", "fastapi", "huggingface_hub", "git"})
LIGHT_MODULES = ("gptoss_cli", "gptoss_cli.cli", "gptoss_cli.config", "gptoss_cli.errors")

MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60
MAX_MEDIAN_LINES = 150
SERVE = "gptoss_cli.serve"
HARMONY = "gptoss_cli.serve.harmony"
HARMONY_MAY_IMPORT = ("gptoss_cli.serve.errors",)

# Function-level cycles outside serve/ that are known and deliberate; fixing one means deleting its line here.
KNOWN_LAZY_CYCLES = {
    # the error boundary needs the output settings, the group callback needs the boundary: both import lazily
    "gptoss_cli.cli._errors -> gptoss_cli.cli._options -> gptoss_cli.cli._errors",
}
# Modules over MAX_MODULE_LINES outside serve/, at their size today: may shrink (then delete the line), not grow.
KNOWN_BIG_MODULES: dict[str, int] = {}



def _listing(items) -> str:
    return "\n  " + "\n  ".join(str(i) for i in items)


def _outside(prefix: str, name: str) -> bool:
    return not (name == prefix or name.startswith(prefix + "."))


# --- the walker itself, on a known shape (a checker that cannot see anything would pass everything) ---------------

def test_the_walker_sees_relative_submodule_function_and_type_checking_imports():
    by = {(i.importer, i.target): i.when for i in g.imports()}
    assert by[("gptoss_cli.fetch", "gptoss_cli.fetch.run")] == "module"  # from gptoss_cli.fetch.run import (...)
    assert by[("gptoss_cli.cli", "gptoss_cli.cli._errors")] == "module"
    assert by[("gptoss_cli.cli", "gptoss_cli")] == "module"  # from gptoss_cli import __version__: a name, not a module
    assert by[("gptoss_cli.config", "huggingface_hub")] == "function"
    assert by[("gptoss_cli.fetch.run", "gptoss_cli.fetch.hub")] == "function"
    assert any(w == "typing" for w in by.values())
    assert len(g.modules()) > 50 and g.modules()["gptoss_cli"].name == "__init__.py"


def test_the_cycle_finder_prints_the_cycle_and_ignores_what_is_not_one():
    edges = {"a": {"b"}, "b": {"c", "d"}, "c": {"a"}, "d": set(), "e": {"e"}, "f": {"a"}}
    assert g.cycles(edges) == ["a -> b -> c -> a", "e -> e"]
    assert g.cycles({"a": {"b"}, "b": set()}) == []


@pytest.fixture
def fake_package(tmp_path, monkeypatch):
    """Point the walker at a package written from ``{relative path: source}`` in tmp (caches cleared around it)."""
    caches = (g.modules, g.tree, g.imports)

    def make(files: dict[str, str]) -> None:
        for rel, text in files.items():
            path = tmp_path / "gptoss_cli" / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        monkeypatch.setattr(g, "ROOT", tmp_path)
        monkeypatch.setattr(g, "PKG_DIR", tmp_path / "gptoss_cli")
        for cached in caches:
            cached.cache_clear()

    yield make
    for cached in caches:
        cached.cache_clear()


def test_relative_imports_resolve_against_the_package(fake_package):
    fake_package({
        "__init__.py": "", "util.py": "",
        "sub/__init__.py": "from . import mod\n",
        "sub/mod.py": "from .. import util\nfrom ..util import thing\nfrom . import other\ndef f():\n    import json\n",
        "sub/other.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from gptoss_cli.sub import mod\n",
    })
    assert {(i.importer, i.target, i.when) for i in g.imports()} == {
        ("gptoss_cli.sub", "gptoss_cli.sub.mod", "module"),
        ("gptoss_cli.sub.mod", "gptoss_cli.util", "module"),
        ("gptoss_cli.sub.mod", "gptoss_cli.sub.other", "module"),
        ("gptoss_cli.sub.mod", "json", "function"),
        ("gptoss_cli.sub.other", "typing", "module"),
        ("gptoss_cli.sub.other", "gptoss_cli.sub.mod", "typing"),
    }


def test_the_harmony_rule_names_what_leaves_the_room(fake_package):
    fake_package({
        "__init__.py": "", "serve/__init__.py": "", "serve/errors.py": "", "serve/protocol.py": "",
        "serve/harmony/__init__.py": "from .render import render\n",
        "serve/harmony/render.py": "import json\nfrom gptoss_cli.serve.errors import E\nfrom . import parse\n",
        "serve/harmony/parse.py": "def f():\n    import pydantic\n    from ..protocol import Chat\n",
    })
    assert _harmony_violations() == ["gptoss_cli/serve/harmony/parse.py:2 imports pydantic (function)",
                                     "gptoss_cli/serve/harmony/parse.py:3 imports gptoss_cli.serve.protocol (function)"]


def test_the_start_up_rule_follows_package_imports_to_the_heavy_one(fake_package):
    fake_package({"__init__.py": "from . import a\n", "a.py": "from gptoss_cli import b\n",
                  "b.py": "def f():\n    import torch\nimport httpx\n"})
    assert _heavy_at_start("gptoss_cli") == ["gptoss_cli/b.py:3 imports httpx (via gptoss_cli -> gptoss_cli.a -> "
                                             "gptoss_cli.b)"]


# --- imports ------------------------------------------------------------------------------------------------------

def test_no_cycle_among_module_level_imports():
    found = g.cycles(g.graph(("module",)))
    assert not found, "import cycles at module level (break one with a function-level import or a shared module):" \
                      + _listing(found)


def test_no_cycle_outside_serve_even_through_function_level_imports():
    edges = {m: {t for t in ts if _outside(SERVE, t)}
             for m, ts in g.graph(("module", "function")).items() if _outside(SERVE, m)}
    found = set(g.cycles(edges))
    assert found - KNOWN_LAZY_CYCLES == set(), "new cycles through function-level imports:" + _listing(
        sorted(found - KNOWN_LAZY_CYCLES))
    assert KNOWN_LAZY_CYCLES - found == set(), "fixed, delete from KNOWN_LAZY_CYCLES:" + _listing(
        sorted(KNOWN_LAZY_CYCLES - found))


def test_core_never_imports_typer_click_or_rich():
    bad = [f"{i.where()} imports {i.target} ({i.when})" for i in g.imports()
           if i.top in UI and _outside("gptoss_cli.cli", i.importer)]
    assert not bad, "UI libraries belong in gptoss_cli/cli/ only:" + _listing(bad)


def _heavy_at_start(start: str) -> list[str]:
    chains = g.closure(start, g.graph(("module",)))
    return [f"{i.where()} imports {i.target} (via {' -> '.join(chains[i.importer])})" for i in g.imports()
            if i.importer in chains and i.when == "module" and i.top in HEAVY]


@pytest.mark.parametrize("start", LIGHT_MODULES)
def test_start_up_modules_import_nothing_heavy_at_module_level(start):
    bad = _heavy_at_start(start)
    assert not bad, f"importing {start} loads heavy packages; move these imports into functions:" + _listing(bad)


def test_core_outside_serve_imports_the_heaviest_only_inside_functions():
    bad = [f"{i.where()} imports {i.target}" for i in g.imports()
           if i.when == "module" and i.top in HEAVIEST and _outside(SERVE, i.importer)]
    assert not bad, "torch/transformers/fastapi/huggingface_hub/git load inside functions:" + _listing(bad)


@pytest.mark.parametrize("start", LIGHT_MODULES)
def test_a_fresh_interpreter_confirms_nothing_heavy_loads(start):
    code = (f"import {start}, sys\n"
            f"print(sorted(m for m in sys.modules if m.split('.')[0] in {sorted(HEAVY)!r}))\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONSTARTUP"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]", f"import {start} loaded: {out.stdout.strip()}"


def _harmony_violations() -> list[str]:
    return [f"{i.where()} imports {i.target} ({i.when})" for i in g.imports()
            if not _outside(HARMONY, i.importer) and not (i.top in g.STDLIB or not _outside(HARMONY, i.target)
                                                          or i.target in HARMONY_MAY_IMPORT)]


def test_harmony_imports_only_the_standard_library_and_itself():
    if not (g.PKG_DIR / "serve" / "harmony").is_dir():
        pytest.skip("gptoss_cli/serve/harmony/ does not exist yet")
    bad = _harmony_violations()
    assert not bad, "serve/harmony/ is pure (stdlib + itself):" + _listing(bad)


# serve/'s rooms, lowest first: a room imports only rooms below it (and serve/'s shared top-level modules), so the
# HTTP front can change without touching the pipeline, and the pipeline without touching an engine.
ROOMS = ("harmony", "policy", "engines", "generation", "openai")


def _room(module: str) -> str | None:
    parts = module.split(".")
    if parts[:2] != ["gptoss_cli", "serve"] or len(parts) < 3:
        return None
    return parts[2] if parts[2] in ROOMS else None


def test_serve_rooms_import_only_rooms_below_them():
    bad = []
    for i in g.imports():
        src, dst = _room(i.importer), _room(i.target)
        if src is not None and dst is not None and ROOMS.index(dst) > ROOMS.index(src):
            bad.append(f"{i.where()} ({src}/) imports {i.target} ({dst}/ is above it)")
    assert not bad, ("serve/ rooms depend downwards only (harmony < policy < engines < generation < openai):"
                     + _listing(bad))


def test_room_rule_sees_an_upward_import():
    """The rule above is not vacuous: the pipeline really imports engines, and the front the pipeline."""
    edges = {(_room(i.importer), _room(i.target)) for i in g.imports()}
    assert ("generation", "engines") in edges and ("openai", "generation") in edges


# --- sizes --------------------------------------------------------------------------------------------------------

def test_no_module_over_400_lines():
    sizes = {m: g.line_count(m) for m in g.modules()}
    bad = [f"{g.rel_path(m)}: {n} lines" for m, n in sorted(sizes.items())
           if n > KNOWN_BIG_MODULES.get(m, MAX_MODULE_LINES)]
    assert not bad, f"modules over {MAX_MODULE_LINES} lines (split by concept):" + _listing(bad)
    stale = [f"{g.rel_path(m)}: now {sizes.get(m)} lines" for m in KNOWN_BIG_MODULES
             if sizes.get(m, 0) <= MAX_MODULE_LINES]
    assert not stale, "small again, delete from KNOWN_BIG_MODULES:" + _listing(stale)
    assert not [m for m in KNOWN_BIG_MODULES if not _outside(SERVE, m)], "serve/ gets no exceptions"


def test_serve_functions_at_most_60_lines():
    bad = [f for m in g.under(SERVE) for f in g.functions(m) if f.lines > MAX_FUNCTION_LINES]
    assert not bad, f"serve/ functions over {MAX_FUNCTION_LINES} lines:" + _listing(bad)


def test_serve_median_module_at_most_150_lines():
    names = [m for m in g.under(SERVE) if g.modules()[m].name != "__init__.py"]  # empty __init__s would flatter it
    median = g.median_lines(names)
    biggest = sorted(names, key=g.line_count, reverse=True)[:10]
    assert median <= MAX_MEDIAN_LINES, (f"serve/ median module is {median} lines over {len(names)} modules "
                                        f"(limit {MAX_MEDIAN_LINES}); largest:"
                                        + _listing(f"{g.rel_path(m)}: {g.line_count(m)}" for m in biggest))


def test_the_size_rules_measure_from_def_to_the_last_line():
    fn = next(f for f in g.functions("gptoss_cli.fetch.run") if f.qualname == "fetch")
    text = g.modules()["gptoss_cli.fetch.run"].read_text().splitlines()
    assert text[fn.line - 1].startswith("def fetch(")
    assert text[fn.line + fn.lines - 2].strip() and fn.lines > 5
    assert g.line_count("gptoss_cli.fetch.run") == len(text)
