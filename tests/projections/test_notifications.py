"""The resident notification outbox: one message per status change of a resident's case, folded from the log."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engine import commands as c
from projections.notifications import MESSAGES, Notification, notification
from projections.store import ViewStore, view_rows
from projections.views import VIEWS
from tests.projections.conftest import Story, follow


def outbox(store: ViewStore) -> list[Notification]:
    with store.reading() as cursor:
        cursor.execute("SELECT * FROM notification_outbox ORDER BY position")
        return [notification(row) for row in cursor.fetchall()]


def told(store: ViewStore, case_id: Any) -> list[str]:
    return [n.status for n in outbox(store) if n.case_id == case_id]


def test_a_resident_is_told_of_each_step_of_their_case_and_nothing_more(played: Any) -> None:
    cases, store = played.story.cases, played.store
    assert told(store, cases["original"]) == ["registered", "dispatched", "handled", "closed", "evaluated"]
    assert told(store, cases["rejected"]) == ["rejected"]
    assert told(store, cases["duplicate"]) == ["merged"]
    assert told(store, cases["suspended"]) == ["registered", "dispatched", "suspended", "resumed"]
    # Returned and re-dispatched: told twice it is dispatched; the failed verification is the desk's own rework.
    assert told(store, cases["returned"]) == ["registered", "dispatched", "dispatched"]
    assert told(store, cases["reassigned"]) == [
        "registered",
        "dispatched",
        "handled",
        "dispatched",
        "handled",
        "closed",
    ]
    # The missed call-back tells the resident nothing; the call-back saying "not fixed" reopens the case.
    assert told(store, cases["not_fixed"]) == ["registered", "dispatched", "handled", "closed", "reopened"]
    assert told(store, cases["complaint"]) == [
        "registered",
        "dispatched",
        "handled",
        "closed",
        "reopened",
        "dispatched",
    ]
    assert told(store, cases["late_upload"]) == []  # a grid worker's patrol finding has no resident behind it


def test_each_message_has_a_stable_id_the_events_position_and_the_reporter_as_recipient(played: Any) -> None:
    app, store = played.story.app, played.store
    for n in outbox(store):
        assert n.id == f"{n.case_id}:{n.version}"
        assert n.position == app.position_of(n.case_id, n.version)
        assert n.recipient == "resident:13800000000"  # no reporter given: the reporting actor
        assert n.case_id.hex[:8] in n.message
    rejected = [n for n in outbox(store) if n.status == "rejected"]
    assert [n.message for n in rejected] == [MESSAGES["rejected"].format(short=rejected[0].case_id.hex[:8],
                                                                        reason="小区内部设施, 物业负责")]  # fmt: skip


def test_a_named_reporter_is_the_recipient_and_a_tongban_request_is_told_where_it_went(
    story: Story, views: ViewStore
) -> None:
    story.report("app", source="app", reporter="13900000009")
    story.on("app", c.RegisterCase)
    story.supervision_paths()
    follow(story.app, views).run_until_caught_up()
    rows = outbox(views)
    assert {n.recipient for n in rows if n.case_id == story.cases["app"]} == {"13900000009"}
    tongban = [(n.event_type, n.status) for n in rows if n.case_id == story.cases["tongban"]]
    assert tongban == [("Registered", "registered"), ("HandedOver", "dispatched"), ("HandlingReported", "handled"),
                       ("Verified", "closed")]  # fmt: skip


def test_folding_the_log_again_gives_the_same_rows_in_any_batch_size(played: Any, tmp_path: Path) -> None:
    again = ViewStore.open(tmp_path / "again.sqlite", VIEWS)
    try:
        follow(played.story.app, again, batch_size=1).run_until_caught_up()
        assert view_rows(again, "notification_outbox") == view_rows(played.store, "notification_outbox")
    finally:
        again.close()
