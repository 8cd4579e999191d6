"""The views gridloop keeps, in one list: what the view store creates and the runner feeds."""

from __future__ import annotations

from engine.catalogue import Catalogue
from projections.audit.accountability import CaseAccountability
from projections.board import CaseBoard
from projections.divisions import DivisionTree
from projections.flow import DailyFlow
from projections.projection import Projection
from projections.queue import WorkerQueue
from projections.timeline import CaseTimeline

VIEWS: tuple[type[Projection], ...] = (
    CaseBoard,
    WorkerQueue,
    CaseTimeline,
    DivisionTree,
    CaseAccountability,
    DailyFlow,
)
VIEW_NAMES: tuple[str, ...] = tuple(view.name for view in VIEWS)


def default_projections(catalogue: Catalogue | None = None) -> list[Projection]:
    """One projection of each view, naming categories from ``catalogue`` (default: the packaged one)."""
    return [
        CaseBoard(catalogue),
        WorkerQueue(catalogue),
        CaseTimeline(),
        DivisionTree(),
        CaseAccountability(),
        DailyFlow(),
    ]
