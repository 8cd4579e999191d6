"""What-if (推演) as a service: replay a recorded period through two dispatch policies and compare the KPIs."""

from __future__ import annotations

from datetime import datetime

from engine.application import Gridloop
from engine.dispatch import POLICIES
from engine.errors import InvalidCommand, UnknownReference
from ops.whatif.model import Replay
from ops.whatif.report import WhatIfReport, kpis
from ops.whatif.source import Period, read_period

DEFAULT_BASELINE = "grid-owner"
"""The baseline when the source's dispatches name no known policy (a desk dispatching by hand mostly does this)."""

SHOWN_REFUSALS = 5


def whatif(
    source: Gridloop, policy: str, start: datetime, end: datetime, *, baseline: str | None = None
) -> WhatIfReport:
    """Replay the requests ``source`` recorded in ``[start, end)`` under ``baseline`` and under ``policy``.

    Both runs use the same model of the assignees, so the deltas compare like with like. ``baseline``
    defaults to the policy the source's dispatches name, else grid-owner. ``source`` is only read.
    """
    for name in (policy, baseline):
        if name is not None and name not in POLICIES:
            raise UnknownReference("dispatch policy", name, list(POLICIES))
    for field, value in (("from", start), ("to", end)):
        if value.tzinfo is None:
            raise InvalidCommand(field, "has no UTC offset", "a timezone-aware time, e.g. 2026-11-23T00:00+08:00")
    if end <= start:
        raise InvalidCommand("to", f"{end.isoformat()} is not after the start {start.isoformat()}", "a later time")
    period = read_period(source, start, end)
    _require_cases(period)
    chosen = baseline or recorded_policy(period)
    first = Replay(source, period, chosen).run()
    second = first if policy == chosen else Replay(source, period, policy).run()
    staff = period.on_duty | set(first.handled_by_worker) | set(second.handled_by_worker)
    return WhatIfReport(
        start=start, end=end, requests=len(period.requests), skipped=period.skipped(),
        baseline=kpis(first, staff), policy=kpis(second, staff),
        refusals=(first.refusals + second.refusals)[:SHOWN_REFUSALS],
    )  # fmt: skip


def recorded_policy(period: Period) -> str:
    """The known policy that made most of the period's first dispatches, else the default baseline."""
    known = [(-count, name) for name, count in period.dispatch_policies.items() if name in POLICIES]
    return min(known)[1] if known else DEFAULT_BASELINE


def _require_cases(period: Period) -> None:
    """An empty period is said as such, with where the store's cases are."""
    span = f"between {period.start.isoformat()} and {period.end.isoformat()}"
    if period.first_reported is None or period.last_reported is None:
        raise InvalidCommand("period", f"no case was reported {span}", "a store that holds reported cases")
    first, last = period.first_reported.isoformat(), period.last_reported.isoformat()
    held = f"this store's cases were reported from {first} to {last}"
    if not period.requests:
        raise InvalidCommand("period", f"no case was reported {span}", held)
    if not period.replayed:
        skipped = ", ".join(f"{k} {n}" for k, n in period.skipped().items() if n)
        problem = f"none of the {len(period.requests)} cases reported {span} was registered ({skipped})"
        raise InvalidCommand("period", f"{problem}, so there is nothing to dispatch", "a period with registered cases")
