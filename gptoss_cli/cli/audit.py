"""``gptoss audit``: thin adapter over ``gptoss_cli.audit.run_audit``."""

from __future__ import annotations

import datetime as _dt
import sys
from pathlib import Path
from typing import Annotated, List, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from gptoss_cli.cli._complete import offer
from gptoss_cli.cli._errors import boundary
from gptoss_cli.cli._options import DestOpt, output_for, settings_for
from gptoss_cli.cli._output import Output
from gptoss_cli.cli._progress import steps
from gptoss_cli.cli._state import remember
from gptoss_cli.errors import CheckFailed, CouldNotRun, UsageError

STALE_DAYS = 30

DestArg = Annotated[Optional[Path], typer.Argument(
    help="Fetch destination whose code/ is audited (default: fetch.dest, searched when no -r/--env is given).",
    show_default=False)]
ReqOpt = Annotated[Optional[List[Path]], typer.Option(
    "--requirement", "-r", help="Audit this requirements file or pyproject.toml too (repeatable).")]
EnvOpt = Annotated[bool, typer.Option("--env", help="Also audit the Python environment gptoss runs in.")]
ServiceOpt = Annotated[Optional[str], typer.Option(
    "--service", autocompletion=offer("gptoss_cli.audit.model:SERVICE_CHOICES"),
    help="Vulnerability service: osv or pypi. (default: osv)", show_default=False)]
OsvUrlOpt = Annotated[Optional[str], typer.Option("--osv-url", help="OSV-compatible query URL (…/v1/query).")]
OsvDbOpt = Annotated[Optional[Path], typer.Option(
    "--osv-db", help="Air-gapped: a local OSV export (PyPI all.zip, a folder of OSV JSON, or one JSON file).")]
IgnoreOpt = Annotated[Optional[List[str]], typer.Option(
    "--ignore-vuln", help="Ignore this vulnerability id or alias (repeatable); ignored ones are still listed.")]
FailOnOpt = Annotated[Optional[str], typer.Option(
    "--fail-on", autocompletion=offer("gptoss_cli.audit.model:FAIL_ON_CHOICES"),
    help="any: exit 1 on any vulnerability; fixable: only when a fixed version exists. (default: any)",
    show_default=False)]
FormatOpt = Annotated[str, typer.Option("--format", "-f", autocompletion=offer("gptoss_cli.audit.formats:FORMATS"),
                                        help="Report format: table, json, cyclonedx or sarif.")]
OutputOpt = Annotated[Optional[Path], typer.Option(
    "--output", "-o", help="Write the report (in --format) to this file, atomically.")]
ResolveOpt = Annotated[Optional[bool], typer.Option(
    "--resolve/--no-resolve", help="Let pip resolve unpinned requirements and their dependencies (needs the "
    "package index). (default: --no-resolve)", show_default=False)]
TimeoutOpt = Annotated[Optional[int], typer.Option(
    "--timeout", help="Seconds per vulnerability-service request. (default: 15)", show_default=False)]


@boundary
def audit(
    ctx: typer.Context,
    dest: DestArg = None,
    requirement: ReqOpt = None,
    env: EnvOpt = False,
    service: ServiceOpt = None,
    osv_url: OsvUrlOpt = None,
    osv_db: OsvDbOpt = None,
    ignore_vuln: IgnoreOpt = None,
    fail_on: FailOnOpt = None,
    fmt: FormatOpt = "table",
    output: OutputOpt = None,
    resolve: ResolveOpt = None,
    timeout: TimeoutOpt = None,
    dest_opt: DestOpt = None,
) -> None:
    """Audit the fetched code's requirements (and optionally this environment) with pip-audit.

    Exit 0: everything checked, nothing found. Exit 1: known vulnerabilities. Exit 3: something could not be checked
    (never reported as clean). Air-gapped: --osv-db PATH audits against a local OSV export with no network.
    """
    from gptoss_cli.audit import FAIL_ON_CHOICES, FORMATS, SERVICE_CHOICES, AuditRequest, render, run_audit
    from gptoss_cli.audit.formats import headline, write_atomic

    out = output_for(ctx)
    if dest is not None and dest_opt is not None and dest != dest_opt:
        raise UsageError("give DEST either as an argument or with --dest, not both")
    explicit_dest = dest or dest_opt
    settings = settings_for(ctx, {
        "fetch.dest": explicit_dest, "audit.service": service, "audit.osv_url": osv_url, "audit.osv_db": osv_db,
        "audit.fail_on": fail_on, "audit.ignore_vulns": ignore_vuln or None, "audit.resolve": resolve,
        "audit.timeout": timeout,
    })
    svc, url, db = settings["audit.service"], settings["audit.osv_url"], settings["audit.osv_db"]
    _check_choice("--service", svc, SERVICE_CHOICES)
    _check_choice("--fail-on", settings["audit.fail_on"], FAIL_ON_CHOICES)
    _check_choice("--format", fmt, FORMATS)
    if db is not None and (url or svc != "osv"):
        raise UsageError("--osv-db serves its own OSV endpoint: drop --osv-url / --service pypi")
    if url and svc != "osv":
        raise UsageError("--osv-url needs --service osv")
    if out.json_mode and fmt not in ("table", "json") and output is None:
        raise UsageError(f"--json prints the JSON report on stdout: write the {fmt} report with --output FILE")
    files = list(requirement or [])
    for path in files:
        if not path.is_file():
            raise UsageError(f"-r {path}: no such file")
    scan = explicit_dest is not None or not (files or env)
    with steps(out) as step:
        request = AuditRequest(
            code_dir=Path(settings["fetch.dest"]) / "code" if scan else None, requirement_files=tuple(files),
            include_env=env, service=svc, osv_url=url, osv_db=db,
            ignore_vulns=tuple(settings["audit.ignore_vulns"]), fail_on=settings["audit.fail_on"],
            resolve=bool(settings["audit.resolve"]), timeout=int(settings["audit.timeout"]),
            cache_dir=settings.home / "pip-audit-cache", progress=step,
        )
        report = run_audit(request)
    if scan:  # DEST's code was audited: `gptoss status` shows it, `gptoss up` may reuse a clean result
        remember(out, Path(settings["fetch.dest"]), "audit", report, request=request)
    _warn_stale(out, report.service.osv_db)
    if output is not None:
        try:
            write_atomic(output, render(report, fmt))
        except OSError as exc:
            raise CouldNotRun(f"cannot write the report to {output}: {exc.strerror or exc}") from None
        out.info(f"wrote the {fmt} report to {output}")
    if fmt in ("cyclonedx", "sarif") and output is None:
        sys.stdout.write(render(report, fmt))
        sys.stdout.flush()
    else:
        json_stdout = out.json_mode or (fmt == "json" and output is None)
        out.json_mode = json_stdout
        out.result(report, lambda console: _human(console, report, headline(report), out))
    _finish(report)


def _check_choice(flag: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise UsageError(f"{flag} {value!r}: choose one of {', '.join(choices)}")


def _warn_stale(out: Output, osv_db: dict | None) -> None:
    newest = (osv_db or {}).get("newest_modified")
    if not newest:
        return
    try:
        when = _dt.datetime.fromisoformat(str(newest).replace("Z", "+00:00"))
    except ValueError:
        return
    if when.tzinfo is None:
        when = when.replace(tzinfo=_dt.timezone.utc)
    age = (_dt.datetime.now(_dt.timezone.utc) - when).days
    if age > STALE_DAYS:
        out.warn(f"the OSV database's newest advisory is {age} days old: download a fresh export")


def _finish(report) -> None:  # noqa: ANN001 - AuditReport
    s = report.summary()
    if report.outcome == "incomplete":
        items = _grouped([u for _, u in report.unchecked()]) + list(report.problems)
        shown = "; ".join(items[:3]) + (f"; and {len(items) - 3} more" if len(items) > 3 else "")
        also = f"; also found {s['vulnerabilities']} known vulnerabilities" if s["vulnerabilities"] else ""
        raise CouldNotRun(f"audit incomplete, not checked: {shown}{also}",
                          hint="nothing is known about what was not checked; this is not a clean result")
    if report.outcome == "vulnerable":
        raise CheckFailed(f"{s['vulnerabilities']} known vulnerabilities in {s['vulnerable_packages']} package(s)",
                          hint="upgrade to the fix versions shown, or --ignore-vuln ID after review")


def _grouped(unchecked: list) -> list[str]:  # noqa: ANN001 - Unchecked
    """One short item per distinct reason ("a, b and 4 more (service unreachable ...)"), not one per package."""
    by_reason: dict[str, list[str]] = {}
    for u in unchecked:
        by_reason.setdefault(u.reason, []).append(u.name)
    items = []
    for reason, names in by_reason.items():
        who = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        items.append(f"{who} ({reason if len(reason) <= 160 else reason[:157] + '...'})")
    return items


def _human(console: Console, report, headline: str, out: Output) -> None:  # noqa: ANN001 - AuditReport
    from gptoss_cli.audit.formats import target_counts

    def row(table: Table, *cells: str) -> None:
        table.add_row(*(escape(c) for c in cells))  # names and reasons come from files: never rich markup

    source = report.service.name + (f" ({report.service.url})" if report.service.url else "")
    console.print(f"gptoss audit — vulnerability data: {source}", markup=False)
    for t in report.targets:
        console.print(f"  {t.kind:<12} {t.label}: {target_counts(t)}", markup=False)
    vulns = report.vulnerabilities()
    if vulns:
        table = out.table("package", "version", "id", "aliases", "fix versions", "target", title="known vulnerabilities")
        for t, p, v in vulns:
            row(table, p.name, p.version, v.id, ", ".join(v.aliases), ", ".join(v.fix_versions) or "-", t.label)
        console.print(table)
    unchecked = report.unchecked()
    if unchecked or report.problems:
        table = out.table("what", "why", "target", title="NOT checked")
        for t, u in unchecked:
            row(table, u.name, u.reason, t.label)
        for problem in report.problems:
            row(table, "-", problem, "-")
        console.print(table)
    if report.ignored:
        console.print("ignored: " + ", ".join(f"{i.id} ({i.package} {i.version})" for i in report.ignored),
                      markup=False)
    style = {"clean": "green", "vulnerable": "red", "incomplete": "yellow"}[report.outcome]
    console.print(headline, style=style, markup=False)
