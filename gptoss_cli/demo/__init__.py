"""The demo model that ships with gptoss: a tiny gpt-oss (real architecture, harmony-trained) ready to serve offline.

The files live in this package (``model/``) next to a ``gptoss.lock.json`` that lists each file's size and SHA-256,
so ``gptoss serve --demo`` loads them directly and verifies them like any fetched model: nothing is built, trained,
downloaded or written at run time. ``model/gptoss-demo.json`` records how the files were made, including the
fingerprint of the harmony rendering they were trained on; ``scripts/build_demo_model.py`` rebuilds them (developers
only, when the server's renderer changes: a test says so).

This module is light (no torch): it only knows where the files are and what they claim.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from gptoss_cli.errors import CouldNotRun

DEMO_VERSION = "2"
DEMO_CURRENT_DATE = "2025-08-05"  # the date rendered into training prompts; `serve --demo` uses it too
DEMO_MAX_MODEL_LEN = 4096
MARKER = "gptoss-demo.json"
LOCK_NAME = "gptoss.lock.json"


def demo_root() -> Path:
    """The shipped folder: ``gptoss.lock.json`` and ``model/``."""
    return Path(__file__).resolve().parent


def demo_model_dir() -> Path:
    """The shipped demo model folder (read-only package data)."""
    folder = demo_root() / "model"
    if not (folder / MARKER).is_file() or not (demo_root() / LOCK_NAME).is_file():
        raise CouldNotRun(f"the demo model files are missing from {demo_root()}",
                          hint="reinstall gptoss-cli (the wheel ships them), or run scripts/build_demo_model.py")
    return folder


def demo_lock_path() -> Path:
    return demo_root() / LOCK_NAME


def demo_info() -> dict[str, Any]:
    """What ``model/gptoss-demo.json`` says about the build (version, seed, steps, loss, prompt fingerprint)."""
    try:
        data = json.loads((demo_model_dir() / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CouldNotRun(f"cannot read the demo model's {MARKER}: {exc}", hint="reinstall gptoss-cli") from None
    if not isinstance(data, dict):
        raise CouldNotRun(f"the demo model's {MARKER} is not a JSON object", hint="reinstall gptoss-cli")
    return data


__all__ = [
    "DEMO_CURRENT_DATE", "DEMO_MAX_MODEL_LEN", "DEMO_VERSION", "MARKER", "demo_info", "demo_lock_path",
    "demo_model_dir", "demo_root",
]
