"""``gptoss journal verify FILE…``: check a request journal's hash chain (exit 0 intact, 1 broken, 3 unreadable).

Not to be confused with ``gptoss audit``, which checks dependencies for known vulnerabilities (pip-audit).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from gptoss_cli.cli._errors import boundary
from gptoss_cli.cli._options import output_for
from gptoss_cli.cli._plain import PlainCommand, PlainGroup
from gptoss_cli.errors import CheckFailed

app = typer.Typer(help="Check the tamper-evident request journal of gptoss serve --journal (gptoss audit is the "
                  "dependency audit).", no_args_is_help=True,
                  rich_markup_mode=None, cls=PlainGroup)


@app.command("verify", cls=PlainCommand)
@boundary
def verify(
    ctx: typer.Context,
    files: Annotated[list[Path], typer.Argument(
        help="The journal and its rotated files (FILE.1, FILE.2, ...), any order; FILE alone brings its "
             "rotated files along.", show_default=False)],
) -> None:
    """Check every record's hash, sequence number and link; report the first edited, deleted, inserted or
    reordered one."""
    from gptoss_cli.journal.verify import verify_journal

    out = output_for(ctx)
    report = verify_journal(files)
    problem = report.problem

    def human(console: object) -> None:
        if problem is None:
            kinds = ", ".join(f"{n} {k}" for k, n in sorted(report.kinds.items())) or "no records"
            sys.stdout.write(f"journal intact: {report.records} records ({kinds}) in {len(report.files)} "
                             f"file(s), last seq {report.last_seq}\n")
        else:
            sys.stdout.write(f"{problem.file}:{problem.line}: {problem.kind}: {problem.message}\n")
        sys.stdout.flush()

    out.result(report, human)
    if problem is not None:
        raise CheckFailed(f"journal broken at {problem.file} line {problem.line}: {problem.kind} record",
                          hint="the journal was changed after it was written; keep this copy as evidence")
