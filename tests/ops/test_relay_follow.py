"""`gridloop relay --follow`'s loop: how soon it looks at the store again after each batch."""

from __future__ import annotations

import threading

import pytest

from ops import relay_cli
from ops.distributed import Election


class _Shipper:
    """Ships the batch sizes it is given, one per call; then asks the loop to stop."""

    def __init__(self, batches: list[int], stop: threading.Event) -> None:
        self._batches = batches
        self._stop = stop

    def ship_batch(self) -> int:
        shipped = self._batches.pop(0)
        if not self._batches:
            self._stop.set()
        return shipped


class _Stop(threading.Event):
    """A stop event that records each wait instead of waiting."""

    def __init__(self) -> None:
        super().__init__()
        self.waits: list[float] = []

    def wait(self, timeout: float | None = None) -> bool:
        assert timeout is not None
        self.waits.append(timeout)
        return self.is_set()


@pytest.mark.parametrize(
    ("batches", "waits"),
    [
        # A full batch: the next at once. A short one: a look soon after. Empty ones: twice the wait each time.
        ([10, 10, 3, 0, 0, 0, 0, 0, 0, 0, 2, 0], [0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.2, 0.2, 0.005, 0.01]),
        ([0, 0, 1], [0.01, 0.02, 0.005]),
    ],
)
def test_a_moving_store_is_looked_at_soon_and_an_idle_one_less_and_less_often(
    batches: list[int], waits: list[float]
) -> None:
    stop = _Stop()
    relay_cli._follow(_Shipper(batches, stop), Election(active=True), stop, batch_size=10)  # type: ignore[arg-type]
    assert stop.waits == pytest.approx(waits)
