"""Optional extras: what ``gptoss serve`` needs beyond the base install, and the one command that adds it.

The base install (fetch, verify, audit, dify-register, doctor) has no torch. ``gptoss serve`` needs the ``serve``
extra: the in-process engine (``transformers``, also ``--demo``) needs torch and transformers, the request-level
engines (``vllm``, ``upstream``) only the HTTP front. ``require`` checks up front, without importing anything, so a
missing piece is one line naming the exact command instead of an ImportError after the work has started.

``pip install 'gptoss-cli[serve]'`` works for an installed gptoss however it was installed (wheel, checkout): pip
takes the installed gptoss-cli and adds the extra's packages. torch goes first with an explicit build, because an
unpinned ``torch`` from PyPI is a multi-GB CUDA build on Linux.
"""

from __future__ import annotations

import importlib.util
from typing import Iterable

from gptoss_cli.errors import CouldNotRun

TORCH_VERSION = "2.13.0"  # the torch scripts/setup.sh and the Dockerfile install, and the suite runs on

# import name -> distribution name (as pyproject's serve extra spells it)
ENGINE_DISTRIBUTIONS = {"torch": "torch", "transformers": "transformers", "safetensors": "safetensors",
                        "tokenizers": "tokenizers"}
FRONT_DISTRIBUTIONS = {"fastapi": "fastapi", "uvicorn": "uvicorn", "pydantic": "pydantic",
                       "prometheus_client": "prometheus-client"}
SERVE_DISTRIBUTIONS = {**ENGINE_DISTRIBUTIONS, **FRONT_DISTRIBUTIONS}


def serve_modules(engine: str) -> tuple[str, ...]:
    """The modules ``gptoss serve --engine ENGINE`` imports in this process."""
    if engine == "transformers":
        return tuple(SERVE_DISTRIBUTIONS)
    return tuple(FRONT_DISTRIBUTIONS)


def missing(modules: Iterable[str]) -> list[str]:
    """The top-level modules of ``modules`` that cannot be imported here (nothing is imported to find out)."""
    gone = []
    for name in modules:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):  # a broken parent or a module without a spec
            found = False
        if not found:
            gone.append(name)
    return gone


def install_command(extra: str = "serve") -> str:
    return f"pip install 'gptoss-cli[{extra}]'"


def install_hint(missing_modules: Iterable[str] = (), extra: str = "serve") -> str:
    """The exact command(s) that add ``extra``; torch first (pinned) when torch itself is missing."""
    if "torch" in set(missing_modules):
        return (f"install torch first, e.g. pip install torch=={TORCH_VERSION} or your CUDA build, "
                f"then {install_command(extra)}")
    return install_command(extra)


def require(extra: str, modules: Iterable[str], *, purpose: str) -> None:
    """Raise ``CouldNotRun`` (exit 3) naming what is missing and the install command, when any module is absent."""
    gone = missing(modules)
    if not gone:
        return
    names = ", ".join(SERVE_DISTRIBUTIONS.get(m, m) for m in gone)
    verb = "is" if len(gone) == 1 else "are"
    raise CouldNotRun(f"{purpose} needs the {extra} extra: {names} {verb} not installed",
                      hint=install_hint(gone, extra))


__all__ = ["TORCH_VERSION", "install_command", "install_hint", "missing", "require", "serve_modules"]
