"""The trace's exports: JSON with stable field names, and one self-contained HTML page with every value escaped."""

from __future__ import annotations

import re
from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest

from engine import commands as c
from projections.api import models
from projections.audit.trace import CaseTrace, case_trace
from projections.audit.trace_export import TRACE_FORMAT, trace_html, trace_json
from projections.store import ViewStore
from tests.projections.conftest import Story, follow

HOSTILE = "<script>alert('痕迹')</script> & \"quoted\""


@pytest.fixture
def trace(story: Story, views: ViewStore) -> CaseTrace:
    """A case whose description, reason and inputs carry markup, dispatched by a policy and handled."""
    case = story.report("hostile", description=HOSTILE)
    story.on("hostile", c.RegisterCase, note="<b>bold</b> note")
    story.on(
        "hostile", c.DispatchCase, actor="policy:balanced", worker="W1", deadline=story.clock.now() + timedelta(days=3),
        reason="<img src=x onerror=alert(1)>", policy="balanced", policy_version="2", inputs={"<k>": "<v>"},
    )  # fmt: skip
    story.on("hostile", c.AcceptCase, actor="W1")
    follow(story.app, views).run_until_caught_up()
    return case_trace(views, str(case), story.app.calendar, now=story.clock.now() + timedelta(minutes=5))


def test_the_json_export_has_stable_field_names(trace: CaseTrace) -> None:
    data = trace_json(trace)
    assert data["format"] == TRACE_FORMAT
    assert list(data) == ["format", "case", "as_of", "calendar", "steps", "totals"]
    assert list(data["case"]) == [
        "case_id", "short_id", "status", "status_name", "category", "category_name", "source", "grid", "community",
        "street", "desk", "description", "reported_at", "closed_at", "accountable", "deadline", "deadline_status",
        "position",
    ]  # fmt: skip
    assert list(data["steps"][0]) == [
        "version", "position", "event_type", "action", "action_name", "actor", "occurred_at", "recorded_at",
        "upload_delay_seconds", "late_upload", "why", "inputs", "details", "state_before", "state_after",
        "state_name", "accountable", "deadline", "deadline_after", "deadline_status", "limit_used", "clock_paused",
        "elapsed_seconds", "working_seconds",
    ]  # fmt: skip
    assert list(data["totals"][0]) == [
        "state", "state_name", "entries", "elapsed_seconds", "working_seconds", "accountable", "ongoing",
    ]  # fmt: skip


def test_the_json_export_says_who_decided_and_keeps_the_text_as_recorded(trace: CaseTrace) -> None:
    data = trace_json(trace)
    dispatched = data["steps"][2]
    assert dispatched["actor"] == {
        "id": "policy:balanced",
        "kind": "policy",
        "policy": "balanced",
        "policy_version": "2",
    }
    assert dispatched["inputs"] == {"<k>": "<v>"} and dispatched["why"] == "<img src=x onerror=alert(1)>"
    assert data["case"]["description"] == HOSTILE
    assert [s["state_name"] for s in data["steps"]] == ["上报", "立案", "派遣", "签收"]
    assert data["steps"][-1]["elapsed_seconds"] == 5 * 60  # the last state, counted up to the trace's `now`
    assert data["case"]["reported_at"].endswith("+00:00")  # ISO 8601 in UTC, as every view writes times


def test_the_json_export_is_what_the_api_documents(trace: CaseTrace) -> None:
    consistency = {"requested": None, "position": 1, "reached": True, "exact": True}
    parsed = models.Trace.model_validate({**trace_json(trace), "consistency": consistency})
    assert parsed.steps[2].actor.policy_version == "2"
    assert set(models.Trace.model_fields) == {*trace_json(trace), "consistency"}


def test_the_html_export_escapes_every_value(trace: CaseTrace) -> None:
    html = trace_html(trace)
    assert "<script" not in html and "<img" not in html and "<b>" not in html and "<k>" not in html
    assert "&lt;script&gt;alert(&#39;痕迹&#39;)&lt;/script&gt; &amp; &#34;quoted&#34;" in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html and "&lt;b&gt;bold&lt;/b&gt; note" in html
    assert "&lt;k&gt;=&lt;v&gt;" in html


def test_the_html_export_needs_nothing_from_outside(trace: CaseTrace) -> None:
    html = trace_html(trace)
    assert re.findall(r"<[^>]*\b(?:src|href)\s*=", html) == []  # no tag loads or links to anything
    for outside in ("http://", "https://", "@import", "url(", "<link", "<script", "<iframe", "<object"):
        assert outside not in html, outside
    assert html.count("<style>") == 1 and '<meta charset="utf-8">' in html


def test_the_html_export_is_labelled_in_chinese_and_english_with_local_times(trace: CaseTrace) -> None:
    html = trace_html(trace)
    for label in (
        "案件痕迹",
        "Case trace",
        "办理步骤",
        "Steps",
        "各状态用时",
        "Time in each state",
        "责任方",
        "Accountable",
    ):
        assert label in html, label
    assert "policy balanced v2" in html and "worker:W1" in html
    assert trace.reported_at.astimezone(ZoneInfo("Asia/Shanghai")).strftime("%Y-%m-%d %H:%M:%S") in html
    assert "@media print" in html
