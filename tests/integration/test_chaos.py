"""`gridloop chaos`: a small run of real fault trials, and proof that its checks can fail."""

from __future__ import annotations

import json
import subprocess
import uuid

from engine.kafka import POSITION, Record
from ops.chaos import plan
from ops.chaos_checks import StoredEvent, check_log, missing_receipts
from tests.conftest import unavailable
from tests.integration.kafka_helpers import GRIDLOOP

SEED = 20261207


def test_two_trials_relay_and_worker_killed_with_poison_lose_nothing_and_dead_letter_only_the_poison() -> None:
    assert GRIDLOOP, "the gridloop console script is not installed in this virtualenv"
    args = ["chaos", "--trials", "2", "--seed", str(SEED), "--commands", "80", "--poison", "2", "--json"]
    done = subprocess.run([GRIDLOOP, *args], capture_output=True, text=True, timeout=600)
    if not done.stdout.strip() and any(word in done.stderr for word in ("Kafka", "java", "mvn")):
        unavailable(f"gridloop chaos needs a local broker: {done.stderr[-500:]}")
    assert done.returncode == 0, f"gridloop chaos exited {done.returncode}:\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
    report = json.loads(done.stdout)
    trials, totals = report["trials"], report["totals"]

    assert [t["target"] for t in trials] == ["relay", "worker"]
    assert [t["poison"] for t in trials] == [2, 0]
    for t in trials:
        assert t["ok"] and not t["error"], t
        assert t["acknowledged"] == t["commands"] == 80
        assert t["restarts"] >= 1, f"trial {t['number']}: the killed {t['target']} was not restarted"
        assert t["events"] > t["commands"] and t["on_kafka"] == t["events"]
        assert (t["duplicates"], t["missing_on_kafka"], t["reorderings"], t["missing_receipts"]) == (0, 0, 0, 0)
        assert t["views_equal"] == t["views"]
        assert t["dead_letters"] == t["poison"]
    assert totals["failed"] == 0 and totals["seed"] == SEED


def test_the_plan_is_seeded_and_any_cycles_through_every_target() -> None:
    assert plan(6, 3, "any", 100, 2) == plan(6, 3, "any", 100, 2)
    assert [t.target for t in plan(6, 3, "any", 100, 2)] == ["relay", "worker", "broker"] * 2
    assert all(20 <= t.kill_after <= 80 for t in plan(50, 4, "broker", 100, 0))


def _record(position: int, aggregate: uuid.UUID, partition: int = 0, offset: int = 0) -> Record:
    return Record(
        topic="t.workorder",
        partition=partition,
        offset=offset,
        key=str(aggregate).encode(),
        value=b"",
        headers={POSITION: str(position).encode()},
    )


def test_the_log_check_counts_a_duplicate_a_missing_event_and_a_reordering_on_a_doctored_log() -> None:
    a, b = uuid.uuid4(), uuid.uuid4()
    stored = [StoredEvent(1, a, 1), StoredEvent(2, b, 1), StoredEvent(3, a, 2), StoredEvent(4, a, 3)]
    faithful = [_record(1, a, 0, 0), _record(3, a, 0, 1), _record(4, a, 0, 2), _record(2, b, 1, 0)]
    assert check_log(faithful, stored).ok

    swapped = [_record(1, a, 0, 0), _record(4, a, 0, 1), _record(3, a, 0, 2), _record(2, b, 1, 0)]
    repeated = [*faithful, _record(2, b, 1, 1)]
    lost = faithful[:-1]
    poisoned = [*faithful, Record("t.workorder", 2, 0, b"x", b"garbage", {})]

    # Position 3 after 4 on the partition, and aggregate a's versions 1, 3, 2: three steps out of order.
    assert check_log(swapped, stored).reorderings == 3 and not check_log(swapped, stored).ok
    assert check_log(repeated, stored).duplicates == 1 and not check_log(repeated, stored).ok
    assert check_log(lost, stored).missing == 1 and not check_log(lost, stored).ok
    assert check_log(poisoned, stored).foreign == 1 and check_log(poisoned, stored).ok


def test_a_receipt_whose_event_is_not_stored_counts_as_missing() -> None:
    a, b = uuid.uuid4(), uuid.uuid4()
    stored = [StoredEvent(1, a, 1), StoredEvent(2, a, 2)]
    assert missing_receipts({2: a}, stored) == 0
    assert missing_receipts({2: a, 3: b}, stored) == 1
