"""Reads of the accountability view: a summary, the violations, one case's holdings."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from engine.errors import InvalidCommand, UnknownReference
from engine.lifecycle import OPEN
from projections.audit.accountability import GAP, HANDED_OVER, KINDS, RELEASED
from projections.projection import count_if, iso, sql_set
from projections.store import Views

_HANDED_OVER = f"outcome = '{HANDED_OVER}'"
_HEX = re.compile(r"[0-9a-f]{1,32}")

_SECONDS = "(ROUND((julianday({end}) - julianday({start})) * 86400000.0) / 1000.0)"
"""Seconds from ``start`` to ``end``, to the millisecond (PostgreSQL has no two-argument ROUND of a double)."""


@dataclass(frozen=True)
class Holding:
    """One interval during which one party was accountable for a case (end None: it still is)."""

    case_id: UUID
    seq: int
    party: str
    start_at: datetime
    end_at: datetime | None
    start_position: int
    end_position: int | None
    start_event: str
    end_event: str | None
    outcome: str | None
    """handed_over (to the next party, in the same event), released (to nobody), ended (the case closed); None."""


@dataclass(frozen=True)
class Violation:
    """A break of 事事有人办: its kind, when (occurred time), the events at either end, the parties, a sentence."""

    case_id: UUID
    n: int
    kind: str
    from_at: datetime
    to_at: datetime | None
    """None: still going on (an open case nobody holds yet)."""
    from_position: int
    to_position: int | None
    from_event: str
    to_event: str | None
    from_party: str | None
    to_party: str | None
    message: str


@dataclass(frozen=True)
class LongHolding:
    """A long holding: who held which case, from when, for how long (up to the horizon if it still does)."""

    case_id: UUID
    party: str
    start_at: datetime
    end_at: datetime | None
    seconds: float


@dataclass(frozen=True)
class AccountabilitySummary:
    """The proof over the whole history, in numbers."""

    horizon: datetime | None
    """The instant the current holdings are measured up to: the latest occurred time in the view, unless given."""
    cases: int
    open_cases: int
    unknown_cases: int
    holdings: int
    current_holdings: int
    parties: int
    hand_overs: int
    violations: dict[str, int]
    longest_holders: list[LongHolding]
    mean_holding_seconds: float | None
    """How long a party kept a case before it passed on (holdings that were handed over or released)."""
    mean_hand_over_seconds: float | None
    """From one party's release to the next one's take-over; a sound hand-over is one event and takes none."""

    @property
    def total_violations(self) -> int:
        return sum(self.violations.values())


def summary(store: Views, now: datetime | None = None, top: int = 5) -> AccountabilitySummary:
    """Cases, holdings, parties, violations by kind, the longest holdings and the mean hand-over time."""
    with store.reading() as cursor:
        cursor.execute(
            f"SELECT COALESCE(SUM(known), 0), COALESCE({count_if(f'status IN {sql_set(OPEN)}')}, 0), "  # noqa: S608
            "COUNT(*) - COALESCE(SUM(known), 0), MAX(last_at) FROM accountability_case"
        )
        cases, open_cases, unknown, latest = cursor.fetchone()
        horizon = iso(now) if now is not None else latest
        held = _SECONDS.format(start="start_at", end="end_at")
        cursor.execute(
            f"SELECT COUNT(*), COALESCE({count_if('end_at IS NULL')}, 0), COUNT(DISTINCT party), "  # noqa: S608
            f"COALESCE({count_if(_HANDED_OVER)}, 0), "
            f"AVG(CASE WHEN outcome IN ('{HANDED_OVER}', '{RELEASED}') THEN {held} END) FROM accountability_interval"
        )
        holdings, current, parties, handed_over, mean_holding = cursor.fetchone()
        cursor.execute("SELECT kind, COUNT(*) FROM accountability_violation GROUP BY kind")
        violations = dict.fromkeys(KINDS, 0) | {row[0]: int(row[1]) for row in cursor.fetchall()}
        cursor.execute(
            f"SELECT COUNT(*), SUM({_SECONDS.format(start='from_at', end='to_at')}) "  # noqa: S608
            f"FROM accountability_violation WHERE kind = '{GAP}'"
        )
        gaps, gap_seconds = cursor.fetchone()
        length = _SECONDS.format(start="start_at", end="COALESCE(end_at, :horizon)")
        cursor.execute(
            f"SELECT case_id, party, start_at, end_at, {length} AS seconds FROM accountability_interval "  # noqa: S608
            "ORDER BY seconds DESC NULLS LAST, case_id, seq LIMIT :top",
            {"horizon": horizon, "top": top},
        )
        longest = [
            LongHolding(UUID(r["case_id"]), r["party"], _time(r["start_at"]), _maybe(r["end_at"]), float(r["seconds"]))
            for r in cursor.fetchall()
            if r["seconds"] is not None
        ]
    hand_overs = int(handed_over) + int(gaps)
    return AccountabilitySummary(
        horizon=_maybe(horizon), cases=int(cases), open_cases=int(open_cases), unknown_cases=int(unknown),
        holdings=int(holdings), current_holdings=int(current), parties=int(parties), hand_overs=hand_overs,
        violations=violations, longest_holders=longest,
        mean_holding_seconds=float(mean_holding) if mean_holding is not None else None,
        mean_hand_over_seconds=(gap_seconds or 0.0) / hand_overs if hand_overs else None,
    )  # fmt: skip


def violations(
    store: Views, kind: str | None = None, case_id: UUID | None = None, limit: int | None = 100
) -> list[Violation]:
    """The violations in log order (of the event that began each), of one kind and one case if given."""
    where, params = _violation_filter(kind, case_id)
    with store.reading() as cursor:
        cursor.execute(
            f"SELECT * FROM accountability_violation WHERE {where} "  # noqa: S608 - placeholders only
            "ORDER BY from_position, case_id, n" + (" LIMIT :limit" if limit is not None else ""),
            params | {"limit": limit},
        )
        return [_violation(row) for row in cursor.fetchall()]


def count_violations(store: Views, kind: str | None = None, case_id: UUID | None = None) -> int:
    """How many violations there are, of one kind and one case if given."""
    where, params = _violation_filter(kind, case_id)
    with store.reading() as cursor:
        cursor.execute(f"SELECT COUNT(*) FROM accountability_violation WHERE {where}", params)  # noqa: S608
        return int(cursor.fetchone()[0])


def holdings(store: Views, case_id: UUID) -> list[Holding]:
    """One case's holdings, first to last (empty for a case the view does not know)."""
    with store.reading() as cursor:
        cursor.execute("SELECT * FROM accountability_interval WHERE case_id = ? ORDER BY seq", (str(case_id),))
        return [_holding(row) for row in cursor.fetchall()]


def audited_case(store: Views, id_or_prefix: str) -> UUID:
    """The case with this id, or the one whose id starts with this prefix, among every case the view has seen
    (a case whose Reported is missing too, which no other view holds)."""
    digits = id_or_prefix.strip().lower().replace("-", "")
    if not _HEX.fullmatch(digits):
        raise InvalidCommand("case", f"{id_or_prefix!r} is not a case id", "a case id or the start of one, in hex")
    with store.reading() as cursor:
        cursor.execute(
            "SELECT case_id FROM accountability_case WHERE substr(REPLACE(case_id, '-', ''), 1, ?) = ? "
            "ORDER BY case_id LIMIT 2",
            (len(digits), digits),
        )
        found = [UUID(row[0]) for row in cursor.fetchall()]
    if not found:
        raise UnknownReference("case", id_or_prefix)
    if len(found) > 1:
        raise InvalidCommand("case", f"{id_or_prefix!r} matches more than one case", "a longer prefix")
    return found[0]


def _violation_filter(kind: str | None, case_id: UUID | None) -> tuple[str, dict[str, Any]]:
    if kind is not None and kind not in KINDS:
        raise UnknownReference("violation kind", kind, KINDS)
    return (
        "(:kind IS NULL OR kind = :kind) AND (:case_id IS NULL OR case_id = :case_id)",
        {"kind": kind, "case_id": str(case_id) if case_id else None},
    )


def _holding(row: Any) -> Holding:
    return Holding(
        UUID(row["case_id"]), row["seq"], row["party"], _time(row["start_at"]), _maybe(row["end_at"]),
        row["start_position"], row["end_position"], row["start_event"], row["end_event"], row["outcome"],
    )  # fmt: skip


def _violation(row: Any) -> Violation:
    return Violation(
        UUID(row["case_id"]), row["n"], row["kind"], _time(row["from_at"]), _maybe(row["to_at"]),
        row["from_position"], row["to_position"], row["from_event"], row["to_event"], row["from_party"],
        row["to_party"], row["message"],
    )  # fmt: skip


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _maybe(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None
