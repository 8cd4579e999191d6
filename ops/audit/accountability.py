"""`gridloop audit accountability`: the proof that every open case had one accountable party (事事有人办)."""

from __future__ import annotations

import json
import sys

import click
from rich.markup import escape
from rich.table import Table

from ops.cli_support import fail_cleanly, local_time, out, plain, runtime
from ops.config import Settings
from projections.audit import accountability_queries as accountability
from projections.audit.accountability import KINDS, CaseAccountability
from projections.runner import EmbeddedRunner


@click.command(name="accountability")
@click.option("--case", "case_ref", default=None, help="One case (its id or the start of it): also its holdings.")
@click.option("--kind", default=None, help=f"Only violations of this kind: {', '.join(KINDS)}.")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 1_000_000), help="Violations shown.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
@fail_cleanly
def accountability_command(
    settings: Settings, case_ref: str | None, kind: str | None, limit: int, as_json: bool
) -> None:
    """Who was accountable for each case when, and every break: unowned, overlap, gap, unknown case.

    Exit status 0 when no violation matches, 1 when some do.
    """
    with runtime(settings) as rt:
        if rt.runner is not None:
            # This view alone: an audit must run on a log the other views cannot fold (a case without its Reported).
            EmbeddedRunner(
                rt.app.recorder, rt.app.mapper, rt.views, [CaseAccountability()], settings.projection_batch_size
            ).run_until_caught_up()
        case_id = accountability.audited_case(rt.views, case_ref) if case_ref else None
        summary = accountability.summary(rt.views)
        found = accountability.count_violations(rt.views, kind, case_id)
        violations = accountability.violations(rt.views, kind, case_id, limit)
        holdings = accountability.holdings(rt.views, case_id) if case_id else []
    if as_json:
        shown = {"summary": plain(summary), "matching": found, "violations": [plain(v) for v in violations]}
        if case_id:
            shown["holdings"] = [plain(h) for h in holdings]
        click.echo(json.dumps(shown, ensure_ascii=False))
    else:
        _print_summary(summary)
        if case_id:
            _print_holdings(holdings)
        _print_violations(violations, found)
    sys.exit(1 if found else 0)


def _print_summary(summary: accountability.AccountabilitySummary) -> None:
    out.print(
        f"[bold]事事有人办[/bold] — {summary.cases} cases ({summary.open_cases} open), as of "
        f"{local_time(summary.horizon)}"
        + (f"; {summary.unknown_cases} case(s) with no Reported event" if summary.unknown_cases else "")
    )
    out.print(
        f"holdings {summary.holdings} ({summary.current_holdings} current) by {summary.parties} parties; "
        f"hand-overs {summary.hand_overs}, mean hand-over {_duration(summary.mean_hand_over_seconds)}, "
        f"mean holding before a hand-over {_duration(summary.mean_holding_seconds)}"
    )
    counts = ", ".join(f"{kind} {summary.violations[kind]}" for kind in KINDS)
    colour = "red" if summary.total_violations else "green"
    out.print(f"violations: [{colour}]{summary.total_violations}[/{colour}] ({counts})")
    if summary.longest_holders:
        table = Table("case", "party", "from", "to", "held", title="longest holders")
        for held in summary.longest_holders:
            table.add_row(
                held.case_id.hex[:8], escape(held.party), local_time(held.start_at),
                local_time(held.end_at) if held.end_at else "(holds it)", _duration(held.seconds),
            )  # fmt: skip
        out.print(table)


def _print_holdings(holdings: list[accountability.Holding]) -> None:
    table = Table("#", "party", "from", "to", "opened by", "closed by", "ended", title="holdings")
    for h in holdings:
        table.add_row(
            str(h.seq), escape(h.party), local_time(h.start_at), local_time(h.end_at) if h.end_at else "(holds it)",
            f"{h.start_event} @{h.start_position}", f"{h.end_event} @{h.end_position}" if h.end_event else "",
            h.outcome or "",
        )  # fmt: skip
    out.print(table)


def _print_violations(violations: list[accountability.Violation], found: int) -> None:
    if not found:
        out.print("[green]no violation: every open case had exactly one accountable party at every moment[/green]")
        return
    table = Table("case", "kind", "from", "to", "positions", "what happened", title="violations")
    for v in violations:
        positions = f"{v.from_position}–{v.to_position}" if v.to_position is not None else f"{v.from_position}–"
        table.add_row(
            v.case_id.hex[:8], f"[red]{v.kind}[/red]", local_time(v.from_at),
            local_time(v.to_at) if v.to_at else "(still)", positions, escape(v.message),
        )  # fmt: skip
    out.print(table)
    out.print(f"{len(violations)} of {found} violation(s) shown")


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    minutes = round(seconds / 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m"
