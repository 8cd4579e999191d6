"""A grid worker's patrol (巡查): checkpoints visited and findings reported, each finding a new case."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from eventsourcing.domain import event

from engine.base import GridloopAggregate
from engine.errors import IllegalTransition


class Patrol(GridloopAggregate):
    """One walk of a grid worker through a grid."""

    @event("Started")
    def __init__(self, *, id: UUID, worker: str, grid: str, occurred_at: datetime) -> None:
        self.worker = worker
        self.grid = grid
        self.started_at = occurred_at
        self.ended = False
        self.checkpoints = 0
        self.findings: list[UUID] = []

    def visit(self, *, lon: float, lat: float, note: str, occurred_at: datetime) -> None:
        """A checkpoint visited, with where it was."""
        self._require_active("visit")
        self._checkpoint_visited(lon=lon, lat=lat, note=note, occurred_at=occurred_at)

    def report_finding(self, *, case_id: UUID, category: str, occurred_at: datetime) -> None:
        """发现: a problem seen on the way; the case itself is a new work order."""
        self._require_active("report_finding")
        self._finding_reported(case_id=case_id, category=category, occurred_at=occurred_at)

    def end(self, *, occurred_at: datetime) -> None:
        self._require_active("end")
        self._ended(occurred_at=occurred_at)

    def _require_active(self, action: str) -> None:
        if self.ended:
            raise IllegalTransition("ended", action, ())

    @event("CheckpointVisited")
    def _checkpoint_visited(self, lon: float, lat: float, note: str, occurred_at: datetime) -> None:
        self.checkpoints += 1

    @event("FindingReported")
    def _finding_reported(self, case_id: UUID, category: str, occurred_at: datetime) -> None:
        self.findings.append(case_id)

    @event("Ended")
    def _ended(self, occurred_at: datetime) -> None:
        self.ended = True
