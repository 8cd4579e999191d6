"""The rebuild benchmark: a simulated district's log of a million positions (made once, cached), every view rebuilt."""

from __future__ import annotations

import cProfile
import tempfile
import time
from datetime import date
from pathlib import Path

from engine.application import Gridloop
from engine.clock import ManualClock
from ops.bench import Measurement
from ops.bench.kafka import profile_text
from ops.presets import load_preset
from ops.simulation.working_time import midnight
from ops.simulator import simulate
from projections.rebuild import BATCH, BlueGreen, LogSource
from projections.runner import EmbeddedRunner
from projections.store import ViewStore
from projections.views import default_projections

PRESET, START = "wuchang", date(2026, 3, 2)
"""武昌区 (1,420 grids, about 60k log positions a simulated day), from a Monday."""
CACHE = Path("var/bench")
"""Where the simulated logs are kept between runs (keyed by preset, seed and size)."""


class _Enough(Exception):
    """The log has the positions asked for: the simulation stops at the end of the day it reached them."""


def simulated_log(size: int, preset: str = PRESET, seed: int | None = None, cache: Path = CACHE) -> Path:
    """An event store of at least ``size`` log positions: ``preset``'s district simulated day by day from START.

    Made once per (preset, seed, size) and kept in ``cache``; written under a temporary name and
    renamed when complete, so an interrupted run leaves nothing that looks finished.
    """
    spec = load_preset(preset)
    run_seed = spec.seed if seed is None else seed
    path = cache / f"log-{preset}-{run_seed}-{size}.sqlite"
    if path.exists():
        return path
    cache.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    for suffix in ("", "-wal", "-shm"):
        Path(f"{partial}{suffix}").unlink(missing_ok=True)
    clock = ManualClock(midnight(START))
    app = _open(partial, clock)

    def enough(days: int) -> None:
        if (app.recorder.max_notification_id() or 0) >= size:
            raise _Enough

    try:
        # A bound of a year: no preset needs it, but a typo in ``size`` should not simulate forever.
        simulate(app, clock, spec, days=366, start=START, seed=run_seed, progress=enough)
    except _Enough:
        pass
    finally:
        app.close()
    partial.rename(path)
    return path


def _open(path: Path, clock: ManualClock) -> Gridloop:
    return Gridloop({"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(path)}, clock=clock)


def blue_green_rebuild(
    size: int, groups: int = 2, profile: bool = False, preset: str = PRESET, cache: Path = CACHE
) -> Measurement:
    """Rebuild every view of a simulated log of ``size`` positions beside caught-up live views, and swap them in.

    Against a raw loop that only reads and decodes the same log. The live views are first folded in
    place by one EmbeddedRunner (what `gridloop project --rebuild` does); that time is a note. With
    ``profile``, one more build in one process under cProfile.
    """
    log = simulated_log(size, preset, cache=cache)
    env = {"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(log), "CREATE_TABLE": "n"}
    app = Gridloop(env)
    total = app.recorder.max_notification_id() or 0
    try:
        with tempfile.TemporaryDirectory(dir=cache) as tmp:
            live = ViewStore.open(Path(tmp) / "views.sqlite")
            projections = default_projections(app.catalogue, app.calendar)
            started = time.perf_counter()
            EmbeddedRunner(app.recorder, app.mapper, live, projections).run_until_caught_up()
            in_place = time.perf_counter() - started

            started = time.perf_counter()
            with BlueGreen(app.recorder, app.mapper, live, projections) as rebuilding:
                rebuilding.build(workers=LogSource(Gridloop, env), groups=groups)
                built = time.perf_counter()
                swapped = rebuilding.swap()
                locked = rebuilding.locked_seconds
            finished = time.perf_counter()
            wrong = [s.name for s in swapped if not s.equal]
            if wrong:
                raise AssertionError(f"the rebuilt views differ from the live ones: {wrong}")
            rows = sum(n for s in swapped for n in s.rows.values())

            profiled = ""
            if profile:
                profiler = cProfile.Profile()
                with BlueGreen(app.recorder, app.mapper, live, projections) as rebuilding:
                    profiler.runcall(rebuilding.build)
                profiled = profile_text(profiler)
            live.close()

        started_raw = time.perf_counter()
        events = _read_and_decode(app)
        raw = time.perf_counter() - started_raw
    finally:
        app.close()
    seconds = finished - started
    return Measurement(
        f"blue/green rebuild (all views, {groups} process(es))",
        total,
        total / seconds,
        total / raw,
        "select_notifications (the views' topics) + mapper.to_domain_event, one process, no views",
        profiled,
        notes=(
            f"blue/green rebuild of {total:,} log positions ({events:,} events the views read; {preset}, "
            f"{len(swapped)} views, {rows:,} rows): {seconds:.1f} s — build {built - started:.1f} s, "
            f"swap {finished - built:.1f} s, of which {locked:.1f} s under the live store's write lock (catch-up, rows "
            "copied, one transaction), the rest both checksums",
            f"the same views folded in place by one EmbeddedRunner (batches of 500, WAL): {in_place:.1f} s "
            f"({total / in_place:,.0f} positions/s)",
        ),
    )


def _read_and_decode(app: Gridloop) -> int:
    """The baseline: read the log as the runner does (windows of BATCH positions, only the topics the views fold)
    and decode every event; how many there were."""
    topics = sorted({topic for projection in default_projections() for topic in projection.topics})
    end = app.recorder.max_notification_id() or 0
    decoded = 0
    for start in range(1, end + 1, BATCH):
        for notification in app.recorder.select_notifications(start, BATCH, stop=start + BATCH - 1, topics=topics):
            app.mapper.to_domain_event(notification)
            decoded += 1
    return decoded
