"""The API's fast board path (records straight from the rows) answers exactly what the typed rows would."""

from __future__ import annotations

from pathlib import Path

from projections import queries
from projections.api.reads import case_json
from projections.scope import Scope
from projections.store import ViewStore

from .conftest import SERVED_AT


def test_board_records_are_the_typed_board_rows_written_as_json(district_template: Path) -> None:
    views = ViewStore.open(district_template / "views.sqlite")
    try:
        for filters in (
            {},
            {"status": ["accepted", "dispatched"]},
            {"overdue": True},
            {"scope": Scope("140827100003")},
        ):
            records = queries.board_records(views, now=SERVED_AT, limit=500, **filters)
            typed = [case_json(row, SERVED_AT) for row in queries.board(views, now=SERVED_AT, limit=500, **filters)]
            assert records == typed
            assert records, filters
    finally:
        views.close()
