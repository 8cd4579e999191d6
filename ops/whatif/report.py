"""The what-if report: each run's KPIs (按期结案率, time to close, workload spread, 督办) and their deltas."""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from engine.work_order import WARNINGS
from ops.whatif.model import Outcome

LIGHTS = tuple(WARNINGS.values())
"""Warning lights, in the order their thresholds are reached: 催办 (green), 临期 (yellow), 超期 (red)."""


@dataclass(frozen=True)
class Kpis:
    """The KPIs of one run of the model under one dispatch policy."""

    policy: str
    cases: int  # replayed: registered in the source, reported again here
    closed: int  # 结案 (verification passed) before the model stopped
    open_at_end: int
    on_time_rate: float | None  # closed by the deadline in force / closed; None when nothing closed
    mean_hours_to_close: float | None  # report → closure, calendar hours
    workers: int  # the staff the spread is measured over (on duty in the period, or handled a case)
    workload_cv: float | None  # coefficient of variation of cases handled per worker (0: perfectly even)
    workload_max: int  # the most cases one worker handled
    unit_cases: int  # cases handled by a unit (department, division) rather than a worker
    escalations: int  # Escalated events (督办)
    warnings: dict[str, int]  # DeadlineWarned events by light
    returns: int  # 退单 played (as often as the source's cases were returned)
    reworks: int  # failed verifications played (返工, as in the source)
    refusals: int  # commands the engine refused (the model's or a policy's): 0 unless something is off


def kpis(outcome: Outcome, staff: Iterable[str]) -> Kpis:
    """The KPIs of a run; the workload spread is over ``staff``, counting those who handled nothing as 0."""
    closed = outcome.closed
    loads = [outcome.handled_by_worker.get(w, 0) for w in sorted(set(staff))]
    mean_load = statistics.fmean(loads) if loads else 0.0
    return Kpis(
        policy=outcome.policy,
        cases=outcome.cases,
        closed=len(closed),
        open_at_end=outcome.open_at_end,
        on_time_rate=round(sum(c.on_time for c in closed) / len(closed), 4) if closed else None,
        mean_hours_to_close=round(statistics.fmean(c.hours for c in closed), 2) if closed else None,
        workers=len(loads),
        workload_cv=round(statistics.pstdev(loads) / mean_load, 4) if mean_load else None,
        workload_max=max(loads, default=0),
        unit_cases=outcome.unit_cases,
        escalations=outcome.escalations,
        warnings={light: outcome.warnings.get(light, 0) for light in LIGHTS},
        returns=outcome.returns,
        reworks=outcome.reworks,
        refusals=len(outcome.refusals),
    )


@dataclass(frozen=True)
class WhatIfReport:
    """Two runs of the same model on the same requests, one per dispatch policy, and what changed."""

    start: datetime
    end: datetime
    requests: int  # reported in the period in the source
    skipped: dict[str, int]  # left out of the replay, by the source's outcome
    baseline: Kpis
    policy: Kpis
    refusals: tuple[str, ...] = ()  # the first refusal texts of either run, to look into

    def delta(self) -> dict[str, Any]:
        """Policy minus baseline for every number (None where either side has none)."""
        return _delta(asdict(self.baseline), asdict(self.policy))

    def as_dict(self) -> dict[str, Any]:
        """Plain values for JSON."""
        return {
            "period": {"from": self.start.isoformat(), "to": self.end.isoformat()},
            "requests": self.requests,
            "skipped": dict(self.skipped),
            "baseline": asdict(self.baseline),
            "policy": asdict(self.policy),
            "delta": self.delta(),
            "refusals": list(self.refusals),
        }


def _delta(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for key, old in before.items():
        new = after[key]
        if isinstance(old, dict):
            found[key] = _delta(old, new)
        elif isinstance(old, bool | str):
            continue
        elif old is None or new is None:
            found[key] = None
        else:
            found[key] = round(new - old, 4)
    return found
