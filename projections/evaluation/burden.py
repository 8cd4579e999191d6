"""Community burden (社区减负): tasks, inspections, reports and certificates pushed onto communities, and refused."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from eventsourcing.dispatch import singledispatchmethod

from engine.admission import KINDS as ITEM_KINDS
from engine.reference import Grid
from engine.work_order import WorkOrder
from projections.evaluation.places import GridMap, level_column, local_day, period_days, within_condition
from projections.projection import Cursor, Projection, ViewTable, event_class, originator_key

if TYPE_CHECKING:
    from projections.kpi_queries import Period
    from projections.store import Views

KINDS: dict[str, str] = {
    "task": "交办任务",
    "inspection": "巡查检查",
    "report": "报表",
    "service": "服务事项",
    "certificate": "证明",
}
"""What can be pushed onto a community: the admission catalogue's kinds (by an item code's letter) and certificates."""

_KIND_OF_LETTER = {letter: kind for kind, letter in ITEM_KINDS.items()}

REFUSALS = ("not_admitted", "abolished_certificate", "out_of_scope")
"""Rejection reasons that refuse the work itself (事务准入, 万能章治理); a duplicate or an invalid report is not."""

ADMISSION_ACTOR = "policy:admission/"
"""The actor prefix of refusals the admission catalogue decided at intake (engine/intake.py), not a desk."""

COUNTS = ("pushed", "refused", "refused_by_rule", "rejected_other")

GRIDS = GridMap("burden_grid")

SCHEMA = (
    GRIDS.schema,
    # The cases that are burden (a department's work, or a certificate asked for): where and what, for their rejection.
    "CREATE TABLE IF NOT EXISTS burden_case (case_id TEXT PRIMARY KEY, grid TEXT NOT NULL, day TEXT NOT NULL, "
    "kind TEXT NOT NULL, item TEXT NOT NULL) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS burden_day (day TEXT NOT NULL, grid TEXT NOT NULL, kind TEXT NOT NULL, "
    "item TEXT NOT NULL, "
    + ", ".join(f"{column} INTEGER NOT NULL DEFAULT 0" for column in COUNTS)
    + ", PRIMARY KEY (day, grid, kind, item)) WITHOUT ROWID",
)


def kind_of(event: Any) -> tuple[str, str] | None:
    """The kind and item code a reported case puts on the community, or None when it is not burden.

    A certificate asked for (any source) is a certificate; a department's case is the kind its admission
    item's letter names, or a task when it names no item (部门交办 outside the catalogue's codes).
    """
    certificate = getattr(event, "certificate", "")
    if certificate:
        return "certificate", certificate
    if event.source != "department":
        return None
    item = getattr(event, "admission_item", "")
    return _KIND_OF_LETTER.get(item[:1], "task") if item else "task", item


class CommunityBurden(Projection):
    """社区减负: what was pushed onto each grid's community each local day, and what the rules refused.

    Counted by grid code and joined to the grid map only when queried (order-insensitive across topics).
    A refusal counts on the day the work was pushed, so refused never exceeds pushed in any period.
    """

    name = "community_burden"
    tables = (
        ViewTable("burden_grid", ("code",)),
        ViewTable("burden_case", ("case_id",)),
        ViewTable("burden_day", ("day", "grid", "kind", "item")),
    )
    schema = SCHEMA

    @singledispatchmethod
    def process_event(self, event: object, position: int, cursor: Cursor) -> None:
        """Fold one event into the burden."""

    @process_event.register(event_class(Grid, "Drawn"))
    def _drawn(self, event: Any, position: int, cursor: Cursor) -> None:
        GRIDS.drawn(event, cursor)

    @process_event.register(event_class(WorkOrder, "Reported"))
    def _reported(self, event: Any, position: int, cursor: Cursor) -> None:
        found = kind_of(event)
        if found is None:
            return
        kind, item = found
        day = local_day(event.occurred_at)
        cursor.execute(
            "INSERT INTO burden_case (case_id, grid, day, kind, item) VALUES (?, ?, ?, ?, ?)",
            (originator_key(event), event.grid, day, kind, item),
        )
        self._add(cursor, (day, event.grid, kind, item), "pushed")

    @process_event.register(event_class(WorkOrder, "Rejected"))
    def _rejected(self, event: Any, position: int, cursor: Cursor) -> None:
        cursor.execute("SELECT day, grid, kind, item FROM burden_case WHERE case_id = ?", (originator_key(event),))
        row = cursor.fetchone()
        if row is None:
            return  # not burden: a resident's or a patrol's report
        key = (row[0], row[1], row[2], row[3])
        if event.reason_code not in REFUSALS:
            self._add(cursor, key, "rejected_other")
        elif event.actor.startswith(ADMISSION_ACTOR):
            self._add(cursor, key, "refused", "refused_by_rule")
        else:
            self._add(cursor, key, "refused")

    @staticmethod
    def _add(cursor: Cursor, key: tuple[str, str, str, str], *columns: str) -> None:
        values = [int(column in columns) for column in COUNTS]
        cursor.execute(
            f"INSERT INTO burden_day (day, grid, kind, item, {', '.join(COUNTS)}) "  # noqa: S608 - constants only
            f"VALUES (?, ?, ?, ?, {', '.join('?' * len(COUNTS))}) ON CONFLICT (day, grid, kind, item) DO UPDATE SET "
            + ", ".join(f"{c} = burden_day.{c} + excluded.{c}" for c in COUNTS),
            (*key, *values),
        )


# -- queries ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class KindBurden:
    """One kind of work pushed onto one place in a period: instances and distinct items (事项)."""

    pushed: int
    refused: int
    """Refused as not admitted (准入), an abolished certificate, or outside the community's remit."""
    refused_by_rule: int
    """Of those, refused at intake by the admission catalogue itself (no desk involved)."""
    rejected_other: int
    """Rejected for another reason (a duplicate, an invalid report): not a refusal of the work."""
    items_pushed: int
    """Distinct item codes pushed (Zhongshan counts these: 33 kinds of inspection, 40 report forms)."""
    items_borne: int
    """Distinct item codes the community was left to do (at least one instance not refused or rejected)."""

    @property
    def borne(self) -> int:
        """Instances the community was left to do."""
        return self.pushed - self.refused - self.rejected_other


@dataclass(frozen=True)
class BurdenRow:
    """One place (a grid, community, street or district) in a period: what was pushed onto it, by kind."""

    level: str
    code: str
    period: str
    kinds: dict[str, KindBurden]
    """By kind of KINDS, every kind present (zeros where none was pushed)."""

    @property
    def pushed(self) -> int:
        return sum(k.pushed for k in self.kinds.values())

    @property
    def refused(self) -> int:
        return sum(k.refused for k in self.kinds.values())

    @property
    def borne(self) -> int:
        return sum(k.borne for k in self.kinds.values())


def burden(store: Views, period: Period, *, level: str = "community", within: str | None = None) -> list[BurdenRow]:
    """What was pushed onto each place of ``level`` in ``period`` (inside ``within`` if given), most borne first.

    Only places something was pushed onto appear; work in a grid the map does not hold yet (from Kafka) waits.
    """
    column = level_column(level)
    condition, params = within_condition("g", within)
    sql = (
        f"SELECT g.{column} AS code, b.kind, SUM(b.pushed) AS pushed, SUM(b.refused) AS refused, "  # noqa: S608
        "SUM(b.refused_by_rule) AS refused_by_rule, SUM(b.rejected_other) AS rejected_other, "
        "COUNT(DISTINCT NULLIF(b.item, '')) AS items_pushed, "
        "COUNT(DISTINCT CASE WHEN b.item != '' AND b.pushed > b.refused + b.rejected_other THEN b.item END) "
        "AS items_borne "
        "FROM burden_day b JOIN burden_grid g ON g.code = b.grid "
        f"WHERE b.day >= :first AND b.day < :end AND {condition} GROUP BY g.{column}, b.kind"
    )
    found: dict[str, dict[str, KindBurden]] = {}
    with store.reading() as cursor:
        cursor.execute(sql, {**period_days(period), **params})
        for r in cursor.fetchall():
            found.setdefault(r["code"], {})[r["kind"]] = KindBurden(
                r["pushed"], r["refused"], r["refused_by_rule"], r["rejected_other"], r["items_pushed"],
                r["items_borne"],
            )  # fmt: skip
    zero = KindBurden(0, 0, 0, 0, 0, 0)
    rows = [
        BurdenRow(level, code, period.label, {kind: kinds.get(kind, zero) for kind in KINDS})
        for code, kinds in found.items()
    ]
    rows.sort(key=lambda r: (-r.borne, -r.pushed, r.code))
    return rows
