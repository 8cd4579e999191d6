"""The API's reads on a PostgreSQL view store answer what they answer on SQLite, over a simulated district."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from engine.clock import ManualClock
from ops.postgres import Server
from ops.runtime import Runtime, open_runtime
from projections import kpi_queries, queries
from projections.api.reads import case_json
from projections.audit import accountability_queries
from projections.callbacks import callback_queue
from projections.runner import EmbeddedRunner
from projections.scope import Scope
from projections.store import Views
from projections.views import default_projections
from tests.projections.conftest import module_schema, postgres_views

from .conftest import DISTRICT, SERVED_AT, settings_for

READS: dict[str, Callable[[Views], Any]] = {
    "board": lambda v: [case_json(row, SERVED_AT) for row in queries.board(v, now=SERVED_AT, limit=500)],
    "board_records": lambda v: queries.board_records(v, now=SERVED_AT, limit=500, status=["accepted", "dispatched"]),
    "overdue_in_a_community": lambda v: queries.board_records(
        v, now=SERVED_AT, overdue=True, scope=Scope("140827100003"), limit=500
    ),
    "category_prefix": lambda v: queries.board_records(v, now=SERVED_AT, category=["E01", "C"], limit=500),
    "summary": lambda v: queries.summary(v, SERVED_AT, scope=Scope(DISTRICT)),
    "escalations": lambda v: queries.escalations(v, now=SERVED_AT),
    "grid_loads": lambda v: queries.grid_loads(v, SERVED_AT),
    "kpi_communities": lambda v: kpi_queries.kpi_table(v, "community", kpi_queries.parse_period("2026-11")),
    "kpi_workers": lambda v: kpi_queries.kpi_table(v, "worker", kpi_queries.parse_period("2026-11-02")),
    "callbacks": lambda v: callback_queue(v, now=SERVED_AT),
    "accountability": lambda v: accountability_queries.summary(v, SERVED_AT),
}


@pytest.fixture(scope="module")
def district(
    district_template: Path, postgres: Server, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Runtime, Views]]:
    """The simulated district's SQLite views, and the same log folded into a PostgreSQL view store."""
    data_dir = tmp_path_factory.mktemp("district-pg")
    shutil.copytree(district_template, data_dir, dirs_exist_ok=True)
    rt = open_runtime(settings_for(data_dir), ManualClock(datetime(2026, 11, 3, 1, 0, tzinfo=UTC)))
    with module_schema(postgres, "api") as schema:
        store = postgres_views(postgres, schema)
        projections = default_projections(rt.app.catalogue, rt.app.calendar)
        EmbeddedRunner(rt.app.recorder, rt.app.mapper, store, projections).run_until_caught_up()
        yield rt, store
        store.close()
    rt.close()


@pytest.mark.parametrize("read", READS)
def test_a_read_answers_alike_on_both_view_stores(district: tuple[Runtime, Views], read: str) -> None:
    rt, postgresql = district
    on_sqlite = READS[read](rt.views)
    assert on_sqlite, f"{read} found nothing in the district: the comparison would prove nothing"
    assert READS[read](postgresql) == on_sqlite


def test_a_case_found_by_its_short_id_and_its_timeline_are_alike(district: tuple[Runtime, Views]) -> None:
    rt, postgresql = district
    [first] = queries.board(rt.views, now=SERVED_AT, limit=1)
    assert queries.find_case(postgresql, first.short_id) == queries.find_case(rt.views, first.short_id)
    assert queries.timeline(postgresql, first.case_id) == queries.timeline(rt.views, first.case_id)
