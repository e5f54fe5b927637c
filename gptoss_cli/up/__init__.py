"""``gptoss up``: fetch → verify → audit → serve → dify-register from one config, idempotent and resumable.

    plan.py     the stage list (UpPlan, built by the CLI from settings) and the frozen stage results
    stages.py   run_up(): each stage through the same core functions the standalone commands use
    records.py  the state record of each result (shared with the standalone commands)
    state.py    DEST/.gptoss/state.json: last result of every stage, written atomically
    server.py   the `gptoss serve` child: spawn, wait for /ready (bounded), pid + log files, stop

Nothing heavy is imported here, and nothing at all until a name is used.
"""

from __future__ import annotations

from typing import Any

# Loaded on first use: the standalone commands record their state through up.records/up.state on every run (verify
# among them, whose start-up is measured), and need none of plan.py.
_WHERE = {"RegisterPlan": "plan", "ServeLaunch": "plan", "StageResult": "plan", "UpPlan": "plan", "UpResult": "plan",
          "DeployState": "state", "StageRecord": "state", "read_state": "state", "record_quietly": "state"}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"gptoss_cli.up.{_WHERE[name]}"), name)


__all__ = ["DeployState", "RegisterPlan", "ServeLaunch", "StageRecord", "StageResult", "UpPlan", "UpResult",
           "read_state", "record_quietly"]
__all__ = sorted(_WHERE)
