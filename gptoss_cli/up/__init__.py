"""``gptoss up``: fetch → verify → audit → serve → dify-register from one config, idempotent and resumable.

    plan.py     the stage list (UpPlan, built by the CLI from settings) and the frozen stage results
    stages.py   run_up(): each stage through the same core functions the standalone commands use
    records.py  the state record of each result (shared with the standalone commands)
    state.py    DEST/.gptoss/state.json: last result of every stage, written atomically
    server.py   the `gptoss serve` child: spawn, wait for /ready (bounded), pid + log files, stop

Nothing heavy is imported here.
"""

from gptoss_cli.up.plan import RegisterPlan, ServeLaunch, StageResult, UpPlan, UpResult
from gptoss_cli.up.state import DeployState, StageRecord, read_state, record_quietly

__all__ = ["DeployState", "RegisterPlan", "ServeLaunch", "StageRecord", "StageResult", "UpPlan", "UpResult",
           "read_state", "record_quietly"]
