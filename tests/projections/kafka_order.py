"""Folding a view's events in any order Kafka could deliver: each aggregate's own in order, aggregates interleaved."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from projections.projection import Projection
from projections.store import ViewStore, view_rows


def log_events(story: Any, projection: Projection) -> list[tuple[Any, int]]:
    """Every event of the story's log the projection has an overload for, with its position, in log order."""
    notifications = story.app.recorder.select_notifications(start=1, limit=100_000, topics=projection.topics)
    return [(story.app.mapper.to_domain_event(n), n.id) for n in notifications]


def as_if_from_kafka(events: list[tuple[Any, int]], rng: random.Random) -> list[tuple[Any, int]]:
    """The events interleaved at random across aggregates, each aggregate's own still in order (one partition)."""
    by_aggregate: dict[Any, list[tuple[Any, int]]] = {}
    for item in events:
        by_aggregate.setdefault(item[0].originator_id, []).append(item)
    queues = list(by_aggregate.values())
    shuffled: list[tuple[Any, int]] = []
    while queues:
        queue = rng.choice(queues)
        shuffled.append(queue.pop(0))
        if not queue:
            queues.remove(queue)
    return shuffled


def fold(projection: Projection, events: list[tuple[Any, int]], path: Path) -> dict[str, list[Any]]:
    """The view's rows after folding ``events`` in the order given into a fresh store."""
    store = ViewStore.open(path)
    try:
        with store.transaction() as cursor:
            for event, position in events:
                projection.process_event(event, position, cursor)
        return view_rows(store, projection.name)
    finally:
        store.close()


def same_in_any_order(story: Any, projection: Projection, tmp_path: Path, orders: int = 6) -> dict[str, list[Any]]:
    """Fold the view in log order and in ``orders`` Kafka-like orders; assert all agree; the log-order rows."""
    events = log_events(story, projection)
    in_log_order = fold(projection, events, tmp_path / "log-order.sqlite")
    rng = random.Random(7)
    shuffled = [as_if_from_kafka(events, rng) for _ in range(orders)]
    assert any(order != events for order in shuffled)
    for i, order in enumerate(shuffled):
        assert fold(projection, order, tmp_path / f"order-{i}.sqlite") == in_log_order
    return in_log_order
