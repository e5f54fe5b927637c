"""One module per endpoint; each has a FastAPI ``router`` (they import FastAPI at module level: only ``create_app``
imports them)."""

from __future__ import annotations

ROUTERS = ("chat", "completions", "models", "health", "metrics")  # the modules create_app includes, in order
