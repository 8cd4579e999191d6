"""Delivering residents' notifications: in log order, at least once, retried with backoff, never resent by a rebuild."""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from engine import commands as c
from engine.clock import ManualClock
from ops.cli import main
from ops.config import ConfigError, load_settings
from ops.notify import ConsoleSender, Deliverer, make_sender
from projections.notifications import Notification
from projections.store import ViewStore
from tests.projections.conftest import T0, Story, event_store, follow


class RecordingSender:
    """A sender that keeps what it was given, and fails for the recipients told to fail."""

    def __init__(self) -> None:
        self.sent: list[Notification] = []
        self.failing: set[str] = set()

    def send(self, notification: Notification) -> None:
        if notification.recipient in self.failing:
            raise ConnectionError(f"gateway refused {notification.recipient}")
        self.sent.append(notification)


class Crash(BaseException):
    """The process dies between the gateway's answer and the record of it."""


class NoSend:
    """Not a sender: it has no send()."""


@pytest.fixture
def story(tmp_path: Path) -> Iterator[Story]:
    clock = ManualClock(T0)
    app = event_store(tmp_path / "events.sqlite", clock)
    story = Story(app, clock).world()
    story.report("a", reporter="13800000001")
    story.on("a", c.RegisterCase)
    story.report("b", reporter="13800000002")
    story.on("b", c.RejectCase, reason_code="not_admitted", reason="物业负责")
    story.report("patrol", source="patrol", actor="W1")
    story.on("patrol", c.RegisterCase)
    story.on("a", c.SuspendCase, reason="等待资金")
    yield story
    app.close()


@pytest.fixture
def views(story: Story, tmp_path: Path) -> Iterator[ViewStore]:
    store = ViewStore.open(tmp_path / "views.sqlite")
    follow(story.app, store).run_until_caught_up()
    yield store
    store.close()


def deliverer(tmp_path: Path, sender: object, clock: ManualClock, **kwargs: object) -> Deliverer:
    return Deliverer(tmp_path / "notify.sqlite", tmp_path / "views.sqlite", sender, clock, **kwargs)  # type: ignore[arg-type]


def test_each_notification_is_sent_once_in_log_order_with_its_stable_id(
    story: Story, views: ViewStore, tmp_path: Path
) -> None:
    sender = RecordingSender()
    first = deliverer(tmp_path, sender, story.clock).deliver()
    assert (first.sent, first.retrying, first.failed) == (3, 0, 0)
    assert [(n.recipient, n.status) for n in sender.sent] == [
        ("13800000001", "registered"), ("13800000002", "rejected"), ("13800000001", "suspended"),
    ]  # fmt: skip
    assert [n.position for n in sender.sent] == sorted(n.position for n in sender.sent)
    assert all(n.id == f"{n.case_id}:{n.version}" for n in sender.sent)
    assert deliverer(tmp_path, sender, story.clock).deliver().attempted == 0
    story.on("a", c.ResumeCase, note="资金到位")
    follow(story.app, views).run_until_caught_up()
    assert deliverer(tmp_path, sender, story.clock).deliver().sent == 1
    assert sender.sent[-1].status == "resumed" and len(sender.sent) == 4


def test_a_rebuilt_view_store_sends_nothing_again(story: Story, views: ViewStore, tmp_path: Path) -> None:
    sender = RecordingSender()
    deliverer(tmp_path, sender, story.clock).deliver()
    views.close()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{tmp_path / 'views.sqlite'}{suffix}").unlink(missing_ok=True)
    fresh = ViewStore.open(tmp_path / "views.sqlite")
    try:
        follow(story.app, fresh, batch_size=1).run_until_caught_up()
        again = deliverer(tmp_path, sender, story.clock)
        assert again.deliver().attempted == 0
        assert again.status().outbox == 3 and again.status().sent == 3
    finally:
        fresh.close()


def test_a_failure_is_retried_with_doubling_backoff_then_given_up(
    story: Story, views: ViewStore, tmp_path: Path
) -> None:
    sender = RecordingSender()
    sender.failing.add("13800000002")
    clock = story.clock
    out = deliverer(tmp_path, sender, clock, max_attempts=3, backoff=timedelta(minutes=1))
    assert (out.deliver().sent, out.status().retrying) == (2, 1)
    clock.advance(timedelta(seconds=59))
    assert out.deliver().attempted == 0  # not due yet
    clock.advance(timedelta(seconds=1))
    assert out.deliver().retrying == 1  # second attempt at one minute; the next waits two
    clock.advance(timedelta(seconds=119))
    assert out.deliver().attempted == 0
    clock.advance(timedelta(seconds=1))
    third = out.deliver()
    assert (third.failed, third.retrying) == (1, 0)
    clock.advance(timedelta(days=1))
    assert out.deliver().attempted == 0  # given up: never tried again
    status = out.status()
    assert (status.sent, status.retrying, status.failed, status.waiting) == (2, 0, 1, 0)
    [failure] = status.failures
    assert failure.attempts == 3 and failure.last_error == "ConnectionError: gateway refused 13800000002"


def test_a_crash_after_sending_sends_the_same_message_again_at_least_once(
    story: Story, views: ViewStore, tmp_path: Path
) -> None:
    sent: list[str] = []

    class CrashingOnce:
        def send(self, notification: Notification) -> None:
            sent.append(notification.id)
            if len(sent) == 1:
                raise Crash

    with pytest.raises(Crash):
        deliverer(tmp_path, CrashingOnce(), story.clock).deliver()
    deliverer(tmp_path, CrashingOnce(), story.clock).deliver()
    assert sent[0] == sent[1] and len(sent) == 4 and len(set(sent)) == 3


def test_the_console_sender_prints_one_line_per_message(story: Story, views: ViewStore, tmp_path: Path) -> None:
    stream = io.StringIO()
    deliverer(tmp_path, ConsoleSender(stream), story.clock).deliver()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 3 and all(line.startswith("[notify] ") for line in lines)
    assert "13800000002" in lines[1] and "未予立案：物业负责。" in lines[1]


def test_the_sender_is_named_by_import_path_and_a_wrong_one_is_refused_at_start_up() -> None:
    sender = make_sender(load_settings({"GRIDLOOP_NOTIFY_SENDER": "tests.ops.test_notify:RecordingSender"}))
    assert isinstance(sender, RecordingSender)
    assert isinstance(make_sender(load_settings({})), ConsoleSender)
    for spec, words in (
        ("sms", "is not an import path"),
        ("nowhere.sms:Gateway", "cannot be imported (No module named 'nowhere')"),
        ("tests.ops.test_notify:Gateway", "has no class or factory 'Gateway'"),
    ):
        with pytest.raises(ConfigError, match=rf"notify_sender: .*{words.replace('(', '.').replace(')', '.')}"):
            load_settings({"GRIDLOOP_NOTIFY_SENDER": spec})
    with pytest.raises(ConfigError, match="made a NoSend, which has no send"):
        make_sender(load_settings({"GRIDLOOP_NOTIFY_SENDER": "tests.ops.test_notify:NoSend"}))
    with pytest.raises(ConfigError, match="notify_max_attempts: 0; allowed: 1 to 100"):
        load_settings({"GRIDLOOP_NOTIFY_MAX_ATTEMPTS": "0"})


def test_gridloop_notify_prints_each_message_once_and_its_status(story: Story, tmp_path: Path) -> None:
    runner = CliRunner()
    args = ["--data-dir", str(tmp_path), "notify"]
    first = runner.invoke(main, args)
    assert first.exit_code == 0, first.output
    assert first.stdout.count("[notify] ") == 3
    assert "3 sent, 0 to retry, 0 failed" in first.stderr
    again = runner.invoke(main, args)
    assert again.stdout.count("[notify] ") == 0 and "0 sent" in again.stderr
    status = runner.invoke(main, [*args, "--status"])
    assert "outbox 3: 3 sent, 0 waiting, 0 retrying, 0 failed" in status.stdout
    bad = runner.invoke(main, args, env={"GRIDLOOP_NOTIFY_SENDER": "nowhere:Gateway"})
    assert bad.exit_code == 2 and "notify_sender: 'nowhere:Gateway' cannot be imported" in bad.stderr
