"""The exports of a case's trace: JSON with stable field names, and one self-contained, printable HTML page."""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import jinja2

from projections.audit.trace import DEADLINE_NAMES, STATE_NAMES, CaseTrace, StateTotal, Step, facts
from projections.projection import iso

TRACE_FORMAT = 1
"""The version of the JSON export's fields (docs/trace.md): raised when a field changes meaning or goes."""

_ISO_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d")


def trace_json(trace: CaseTrace) -> dict[str, Any]:
    """The trace as JSON-ready data: times in ISO 8601 UTC, durations in seconds, states by value."""
    return {
        "format": TRACE_FORMAT,
        "case": {
            "case_id": str(trace.case_id), "short_id": trace.short_id, "status": trace.status.value,
            "status_name": STATE_NAMES[trace.status], "category": trace.category,
            "category_name": trace.category_name, "source": trace.source, "grid": trace.grid,
            "community": trace.community, "street": trace.street, "desk": trace.desk,
            "description": trace.description, "reported_at": iso(trace.reported_at),
            "closed_at": _iso(trace.closed_at), "accountable": trace.accountable, "deadline": _iso(trace.deadline),
            "deadline_status": trace.deadline_status, "position": trace.position,
        },
        "as_of": _iso(trace.as_of),
        "calendar": {"zone": trace.zone, "working_hours": trace.working_hours},
        "steps": [_step_json(step) for step in trace.steps],
        "totals": [_total_json(total) for total in trace.totals],
    }  # fmt: skip


def _step_json(step: Step) -> dict[str, Any]:
    return {
        "version": step.version, "position": step.position, "event_type": step.event_type, "action": step.action,
        "action_name": step.action_name,
        "actor": {
            "id": step.actor.id, "kind": step.actor.kind, "policy": step.actor.policy,
            "policy_version": step.actor.policy_version,
        },
        "occurred_at": iso(step.occurred_at), "recorded_at": iso(step.recorded_at),
        "upload_delay_seconds": (step.recorded_at - step.occurred_at).total_seconds(),
        "late_upload": step.late_upload, "why": step.why, "inputs": dict(step.details.get("inputs") or {}),
        "details": dict(step.details),
        "state_before": step.state_before.value if step.state_before else None, "state_after": step.state_after.value,
        "state_name": STATE_NAMES[step.state_after], "accountable": step.accountable,
        "deadline": _iso(step.deadline), "deadline_after": _iso(step.deadline_after),
        "deadline_status": step.deadline_status, "limit_used": step.limit_used, "clock_paused": step.clock_paused,
        "elapsed_seconds": _seconds(step.elapsed), "working_seconds": _seconds(step.working),
    }  # fmt: skip


def _total_json(total: StateTotal) -> dict[str, Any]:
    return {
        "state": total.state.value, "state_name": STATE_NAMES[total.state], "entries": total.entries,
        "elapsed_seconds": total.elapsed.total_seconds(), "working_seconds": total.working.total_seconds(),
        "accountable": list(total.accountable), "ongoing": total.ongoing,
    }  # fmt: skip


def trace_html(trace: CaseTrace) -> str:
    """The trace as one HTML page: inline CSS, no script, font, image or link from outside; every value escaped."""
    zone = ZoneInfo(trace.zone)
    return _template().render(
        trace=trace,
        state_names=STATE_NAMES,
        deadline_names=DEADLINE_NAMES,
        local=lambda moment: local_time(moment, zone),
        value=lambda v: fact_text(v, zone),
        facts=facts,
        span=span,
    )


@functools.cache
def _template() -> jinja2.Template:
    # PackageLoader finds the template in an installed package too (it is package data: see pyproject.toml).
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("projections.audit", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return env.get_template("trace.html")


def local_time(moment: datetime | None, zone: ZoneInfo) -> str:
    """A time as the auditor's clock shows it: local date, hours, minutes and seconds ('—' for none)."""
    return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S") if moment is not None else "—"


def span(duration: timedelta | None) -> str:
    """A duration in days, hours and minutes (2d 3h 05m, 4h 10m, 12m; '—' for none)."""
    if duration is None:
        return "—"
    minutes = int(duration.total_seconds() // 60)
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h {minutes:02d}m"
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m"


def fact_text(value: Any, zone: ZoneInfo) -> str:
    """A field of an event as text: times in local time, lists and maps spelled out."""
    if isinstance(value, str) and _ISO_TIME.match(value):
        return local_time(datetime.fromisoformat(value), zone)
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(fact_text(v, zone) for v in value)
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={fact_text(v, zone)}" for k, v in value.items())
    return str(value)


def _iso(moment: datetime | None) -> str | None:
    return iso(moment) if moment is not None else None


def _seconds(duration: timedelta | None) -> float | None:
    return duration.total_seconds() if duration is not None else None
