"""The views gridloop keeps, in one list: what the view store creates and the runner feeds."""

from __future__ import annotations

from engine.catalogue import Catalogue
from engine.working_time import WorkingCalendar
from projections.audit.accountability import CaseAccountability
from projections.board import CaseBoard
from projections.callbacks import CallbackQueue
from projections.divisions import DivisionTree
from projections.evaluation.burden import CommunityBurden
from projections.evaluation.coverage import PatrolCoverage
from projections.evaluation.four_degrees import FourDegrees
from projections.flow import DailyFlow
from projections.kpi import KpiFacts
from projections.notifications import NotificationOutbox
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
    KpiFacts,
    PatrolCoverage,
    FourDegrees,
    CommunityBurden,
    CallbackQueue,
    NotificationOutbox,
)
VIEW_NAMES: tuple[str, ...] = tuple(view.name for view in VIEWS)


def default_projections(
    catalogue: Catalogue | None = None, calendar: WorkingCalendar | None = None
) -> list[Projection]:
    """One projection of each view, naming categories from ``catalogue`` (default: the packaged one) and counting
    working time on ``calendar`` (default: mainland China's), as the application does."""
    return [
        CaseBoard(catalogue),
        WorkerQueue(catalogue),
        CaseTimeline(),
        DivisionTree(),
        CaseAccountability(),
        DailyFlow(),
        KpiFacts(catalogue, calendar),
        PatrolCoverage(),
        FourDegrees(),
        CommunityBurden(),
        CallbackQueue(catalogue, calendar),
        NotificationOutbox(),
    ]
