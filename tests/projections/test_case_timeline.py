"""The case timeline: every event of a case, in order, with its actor, times and own fields."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from projections.queries import timeline


def test_each_cases_timeline_is_its_event_stream_in_order(played: Any) -> None:
    app = played.story.app
    for case_id in played.story.cases.values():
        stored = list(app.repository.event_store.get(case_id))
        rows = timeline(played.store, case_id)
        assert [(r.version, r.event_type) for r in rows] == [(e.originator_version, type(e).__name__) for e in stored]
        assert [(r.occurred_at, r.recorded_at, r.actor) for r in rows] == [
            (e.occurred_at, e.timestamp, e.actor) for e in stored
        ]
        assert [r.position for r in rows] == [app.position_of(case_id, e.originator_version) for e in stored]


def test_the_reassigned_cases_timeline_reads_like_what_happened(played: Any) -> None:
    rows = timeline(played.store, played.story.cases["reassigned"])
    assert [r.event_type for r in rows] == [
        "Reported", "Registered", "Dispatched", "Reassigned", "Accepted", "ExtensionRequested", "ExtensionGranted",
        "ExtensionRequested", "ExtensionDenied", "HandlingReported", "Verified", "Dispatched", "Accepted",
        "HandlingReported", "Verified",
    ]  # fmt: skip
    by_type = {r.event_type: r for r in rows}
    assert by_type["Reassigned"].details["worker"] == "W2" and by_type["Reassigned"].details["reason"] == "W1 请假"
    assert by_type["ExtensionDenied"].details == {"reason": "不再延期"}
    assert rows[10].details == {"passed": False, "note": "仍在漏水"}
    assert rows[9].details == {"result": "已更换", "photos": ["a.jpg", "b.jpg"]}
    assert rows[9].actor == "W2"
    first_request, granted = rows[5], rows[6]
    assert granted.details["new_deadline"] == first_request.details["until"] == "2026-12-03T01:00:00.000000+00:00"


def test_a_policy_decision_shows_the_policy_its_version_and_its_inputs(played: Any) -> None:
    rows = timeline(played.store, played.story.cases["original"])
    (dispatched,) = [r for r in rows if r.event_type == "Dispatched"]
    assert {k: dispatched.details[k] for k in ("policy", "policy_version", "inputs", "worker", "unit")} == {
        "policy": "nearest_on_duty",
        "policy_version": "1.2",
        "inputs": {"distance_m": "120"},
        "worker": "W1",
        "unit": "",
    }
    assert rows[-1].event_type == "CalledBack" and rows[-1].details["satisfaction"] == 5
    linked = [r for r in rows if r.event_type == "DuplicateLinked"]
    assert [r.details["duplicate_case"] for r in linked] == [str(played.story.cases["duplicate"])]


def test_escalations_show_their_level_and_reason(played: Any) -> None:
    rows = [r for r in timeline(played.store, played.story.cases["escalated"]) if r.event_type == "Escalated"]
    assert [(r.details["level"], r.details["reason"], r.actor) for r in rows] == [
        (1, "超期未处置", "supervisor"),
        (3, "街道督办", "supervisor"),
    ]


def test_a_late_upload_is_on_the_timeline_at_the_time_it_happened(played: Any) -> None:
    (reported,) = timeline(played.store, played.story.cases["late_upload"])
    assert reported.recorded_at - reported.occurred_at == timedelta(hours=2, minutes=5)
    assert reported.details["patrol_id"] is not None and reported.details["source"] == "patrol"


def test_times_are_stored_as_iso_utc_text_that_sorts(played: Any) -> None:
    with played.store.reading() as cursor:
        cursor.execute("SELECT occurred_at, recorded_at FROM timeline_event")
        texts = [t for row in cursor.fetchall() for t in tuple(row)]
    assert texts and all(t.endswith("+00:00") and len(t) == len("2026-11-23T01:00:00.000000+00:00") for t in texts)
