"""Blue/green rebuilds (重建): views folded from offset zero beside the live ones, then swapped in one transaction."""

from __future__ import annotations

import fcntl
import multiprocessing
import queue
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from uuid import UUID

import structlog
from eventsourcing.application import Application
from eventsourcing.persistence import ApplicationRecorder, Mapper

from engine.errors import GridloopError
from projections.projection import Projection
from projections.replay import remove_store
from projections.runner import EmbeddedRunner, Progress
from projections.store import LOCK_TIMEOUT, ViewStore, checksum
from projections.views import default_projections

log = structlog.get_logger()

BATCH = 20_000
"""Log positions per transaction while building: the scratch file has no readers and no other writer. Large,
so that most events of a case fall in the batch of the one before it and the views read its row from their
memo (TransactionMemo; measured on a simulated district: 62 % of case events at 5,000, 84 % at 20,000)."""


MMAP = 1 << 30
"""Bytes of each store the swap's connections map into memory while they read the views whole."""


class RebuildBusy(GridloopError):
    """Another rebuild of the same view store is running."""


@dataclass(frozen=True)
class Swapped:
    """One view at the swap: the position both sides stood at, their checksums, and the rows now live."""

    name: str
    position: int
    live: str
    """The live view's checksum before the swap ('' if the live view was behind the rebuild: not comparable)."""
    rebuilt: str
    rows: dict[str, int]

    @property
    def compared(self) -> bool:
        """Whether both sides stood at the same position, so that their checksums say something."""
        return self.live != ""

    @property
    def equal(self) -> bool:
        """Whether the live view was what the log says it should be (False also when it could not be compared)."""
        return self.live == self.rebuilt


@dataclass(frozen=True)
class LogSource:
    """How a worker process opens the event store and the views itself (picklable: an application class, its env)."""

    app_class: type[Application[UUID]]
    env: dict[str, str]

    def open(self) -> Application[UUID]:
        """The application on the same store, without creating tables."""
        return self.app_class({**self.env, "CREATE_TABLE": "n"})


@dataclass(frozen=True)
class _Scratch:
    """One file a group of views is built in, and the store it is open as (in this process)."""

    path: Path
    store: ViewStore
    projections: tuple[Projection, ...]


class BlueGreen:
    """A rebuild of some views of a live view store: build beside it (``build``), then ``swap``.

    Use as a context manager: it holds a lock file beside the live store (two rebuilds of one store
    would build over each other's files) and deletes the scratch files on leaving, swapped or not. A
    rebuild killed midway leaves its scratch files and nothing else: the live store is only written by
    the swap's one transaction, and the next rebuild deletes what the killed one left.
    """

    def __init__(
        self,
        recorder: ApplicationRecorder,
        mapper: Mapper[UUID],
        live: ViewStore,
        projections: Sequence[Projection],
        batch_size: int = BATCH,
    ) -> None:
        self._recorder = recorder
        self._mapper = mapper
        self._live = live
        self._live_path = Path(live.datastore.pool.db_name)
        self._projections = tuple(projections)
        self._batch_size = batch_size
        self._scratch: list[_Scratch] = []
        self._lock: IO[bytes] | None = None
        self.locked_seconds = 0.0
        """How long the last swap held the live store's write lock (live runners waited that long)."""

    def __enter__(self) -> BlueGreen:
        lock = self._live_path.with_name(self._live_path.name + ".rebuild.lock").open("wb")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            raise RebuildBusy(f"another rebuild of {self._live_path} is running; wait for it to finish") from None
        self._lock = lock
        for path in self._scratch_paths():
            remove_store(path)  # left by a rebuild that was killed
        return self

    def __exit__(self, *exc: object) -> None:
        for scratch in self._scratch:
            scratch.store.close()
        for path in self._scratch_paths():
            remove_store(path)
        self._scratch.clear()
        if self._lock is not None:
            self._lock.close()  # releases the flock
            self._lock = None

    def _scratch_paths(self) -> list[Path]:
        return sorted(self._live_path.parent.glob(f"{self._live_path.stem}.rebuild-*.sqlite"))

    def _path(self, group: int) -> Path:
        return self._live_path.with_name(f"{self._live_path.stem}.rebuild-{group}.sqlite")

    def build(self, progress: Progress | None = None, workers: LogSource | None = None, groups: int = 1) -> int:
        """Fold the views from offset zero into scratch files up to the log's end now; returns that position.

        With ``workers`` (how to open the log in another process) and ``groups`` > 1, the views are
        split into that many groups, each folded by a process of its own into a file of its own;
        ``progress`` is then told the position the slowest group has reached.
        """
        if self._lock is None:
            raise RuntimeError("BlueGreen.build outside its with block")
        end = self._recorder.max_notification_id() or 0
        split = _split(self._projections, groups if workers is not None else 1)
        if len(split) == 1:
            scratch = self._open_scratch(0, split[0])
            EmbeddedRunner(
                self._recorder, self._mapper, scratch.store, split[0], self._batch_size, stop=end, progress=progress
            ).run_until_caught_up()
        else:
            assert workers is not None
            jobs = [(self._path(i), [p.name for p in group]) for i, group in enumerate(split)]
            took = _build_in_workers(workers, jobs, end, progress)
            seconds = {" ".join(names): round(t, 1) for (_, names), t in zip(jobs, took, strict=True)}
            log.info("views_built_apart", seconds=seconds)
            for i, group in enumerate(split):
                self._open_scratch(i, group, fresh=False)
        log.info("views_built", views=[p.name for p in self._projections], position=end, files=len(split))
        return end

    def _open_scratch(self, group: int, projections: Sequence[Projection], fresh: bool = True) -> _Scratch:
        path = self._path(group)
        if fresh:
            remove_store(path)
        store = open_scratch(path, [type(p) for p in projections])
        scratch = _Scratch(path, store, tuple(projections))
        self._scratch.append(scratch)
        return scratch

    def swap(self, check_only: bool = False) -> tuple[Swapped, ...]:
        """In one write transaction of the live store: bring each built view to the live view's position and
        (unless ``check_only``) replace the live rows with the built ones; then checksum both sides.

        The transaction holds the live store's write lock from its first statement: live runners wait
        for it (and then go on from the same position: the tracking is unchanged), readers keep the
        snapshot they have, and see the rebuilt rows whole once it commits. The checksums are of the
        same two states, but computed once the lock is released: the live rows as they were, from a
        read snapshot taken under the lock before they were replaced; the built rows from the files
        nobody writes any more. Hashing them under the lock would hold the live runners for as long
        again (measured: 18 s of a 22 s swap, over a million positions).
        """
        if not self._scratch:
            raise RuntimeError("BlueGreen.swap before build")
        # The live views first read what the build read, as any runner would: then both stand at the
        # same position under the lock. One at a time, so that a view that cannot be folded any more
        # (what a rebuild is for) holds back no other; it is swapped without a comparison.
        for projection in self._projections:
            try:
                EmbeddedRunner(self._recorder, self._mapper, self._live, [projection]).run_until_caught_up()
            except Exception as exc:
                log.warning("live_view_not_caught_up", view=projection.name, error=f"{type(exc).__name__}: {exc}")
        started = time.perf_counter()
        with (
            _attached(self._live_path, [s.path for s in self._scratch]) as connection,
            _attached(self._live_path, []) as before,
        ):
            cursor = connection.cursor()
            # The write lock of the live store only: a plain BEGIN takes no lock, and the first write takes
            # main's alone (BEGIN IMMEDIATE would lock the attached files too, and the build could not
            # catch up under the lock). The statement changes nothing.
            cursor.execute("BEGIN")
            cursor.execute("UPDATE main.tracking SET notification_id = notification_id WHERE application_name = ''")
            live = _positions(cursor, [p.name for p in self._projections])
            # Every build catches up before any is read: reading an attached file holds a shared lock on it
            # until the transaction ends, and a build could not write past that.
            for scratch in self._scratch:
                for projection in scratch.projections:
                    # Nobody writes the live view now: its position holds still while the build catches up.
                    EmbeddedRunner(
                        self._recorder, self._mapper, scratch.store, [projection], self._batch_size,
                        stop=live[projection.name],
                    ).run_until_caught_up()  # fmt: skip
            # The live rows as they stand now, kept for their checksums: a read snapshot (WAL) outlives commits.
            before.execute("BEGIN")
            before.execute("SELECT COUNT(*) FROM main.tracking")
            order = {projection.name: n for n, projection in enumerate(self._projections)}
            views = sorted(
                (
                    (f"fresh{i}", projection, scratch.store.positions([projection.name])[projection.name])
                    for i, scratch in enumerate(self._scratch)
                    for projection in scratch.projections
                ),
                key=lambda view: order[view[1].name],  # as given, whichever file a view was built in
            )
            for schema, projection, built in views:
                if not check_only:
                    _replace(cursor, schema, projection, built)
            cursor.execute("ROLLBACK" if check_only else "COMMIT")
            self.locked_seconds = time.perf_counter() - started
            cursor.execute("BEGIN")  # the built files, as the swap left them
            swapped = _checksums(cursor, before, views, live)
            cursor.execute("COMMIT")
            before.execute("COMMIT")
        log.info(
            "views_swapped" if not check_only else "views_checked",
            views={v.name: v.equal for v in swapped},
            locked_seconds=round(self.locked_seconds, 3),
            seconds=round(time.perf_counter() - started, 3),
        )
        return tuple(swapped)


def rebuild(
    recorder: ApplicationRecorder,
    mapper: Mapper[UUID],
    live: ViewStore,
    projections: Sequence[Projection],
    progress: Progress | None = None,
    check_only: bool = False,
    workers: LogSource | None = None,
    groups: int = 1,
) -> tuple[Swapped, ...]:
    """Build ``projections`` beside the live store and swap them in (see BlueGreen); each view's result."""
    with BlueGreen(recorder, mapper, live, projections) as blue_green:
        blue_green.build(progress, workers, groups)
        return blue_green.swap(check_only)


def open_scratch(path: Path, views: Sequence[type[Projection]]) -> ViewStore:
    """A view store for a build nobody reads until it is done: no journal, no syncs, a large page cache.

    A crash may leave the file corrupt, which is fine: it is thrown away, and the next build starts anew.
    """
    store = ViewStore.open(path, views)
    with store.datastore.get_connection(commit=True) as connection:
        cursor = connection.cursor()
        for pragma in ("journal_mode=OFF", "synchronous=OFF", "cache_size=-262144", "temp_store=MEMORY"):
            cursor.execute(f"PRAGMA {pragma}")
    return store


@contextmanager
def _attached(live: Path, scratch: Sequence[Path]) -> Iterator[sqlite3.Connection]:
    """A connection of its own to the live store, with each scratch file attached as fresh0, fresh1, …"""
    connection = sqlite3.connect(live, timeout=LOCK_TIMEOUT, isolation_level=None)
    try:
        for i, path in enumerate(scratch):
            connection.execute(f"ATTACH DATABASE ? AS fresh{i}", (str(path),))
        for schema in ("main", *(f"fresh{i}" for i in range(len(scratch)))):
            # Reading whole views for their checksums: mapped pages, not copied ones (measured: a fifth faster).
            connection.execute(f"PRAGMA {schema}.mmap_size = {MMAP}")
        yield connection
    except BaseException:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise
    finally:
        connection.close()


def _positions(cursor: sqlite3.Cursor, names: Sequence[str]) -> dict[str, int]:
    """The live store's tracking position of each named view (0 for one with none), in the cursor's transaction."""
    cursor.execute(
        f"SELECT application_name, notification_id FROM main.tracking "  # noqa: S608 - placeholders only
        f"WHERE application_name IN ({', '.join('?' * len(names))})",
        list(names),
    )
    return dict.fromkeys(names, 0) | {row[0]: int(row[1]) for row in cursor.fetchall()}


def _replace(cursor: sqlite3.Cursor, schema: str, projection: Projection, position: int) -> None:
    """The live view's rows become the built view's (table by table, column by name), and so does its tracking."""
    for table in projection.tables:
        _replace_rows(cursor, table.name, schema)
    cursor.execute(
        "INSERT INTO main.tracking (application_name, notification_id) VALUES (?, ?) "
        "ON CONFLICT (application_name) DO UPDATE SET notification_id = excluded.notification_id",
        (projection.name, position),
    )


def _replace_rows(cursor: sqlite3.Cursor, table: str, schema: str) -> None:
    """The live table's rows become the built table's, column by column (by name, whatever their order)."""
    cursor.execute(f"SELECT name FROM pragma_table_info('{table}', '{schema}')")  # noqa: S608 - constants
    columns = ", ".join(row[0] for row in cursor.fetchall())
    cursor.execute(f"DELETE FROM main.{table}")  # noqa: S608
    cursor.execute(f"INSERT INTO main.{table} ({columns}) SELECT {columns} FROM {schema}.{table}")  # noqa: S608


def _checksums(
    built: sqlite3.Cursor, before: sqlite3.Connection, views: list[tuple[str, Projection, int]], live: dict[str, int]
) -> list[Swapped]:
    """Each view's checksum in the built file and, where it stood at the same position, in the live snapshot."""
    result = []
    for schema, projection, position in views:
        rows = {}
        for table in projection.tables:
            built.execute(f"SELECT COUNT(*) FROM {schema}.{table.name}")  # noqa: S608 - constants
            rows[table.name] = int(built.fetchone()[0])
        # A live view behind the build (it could not be folded) is not compared: its rows are of another position.
        old = checksum(before.cursor(), type(projection), "main") if position == live[projection.name] else ""
        result.append(Swapped(projection.name, position, old, checksum(built, type(projection), schema), rows))
    return result


WEIGHTS = {
    "accountability": 95, "case_board": 85, "kpi": 78, "case_timeline": 66, "four_degrees": 60,
    "patrol_coverage": 60, "worker_queue": 40, "daily_flow": 36, "notification_outbox": 18, "callback_queue": 10,
    "community_burden": 3, "division_tree": 2,
}  # fmt: skip
"""Each view's share of a build, measured: its handlers' milliseconds per thousand log positions of a simulated
district (wuchang, 112,649 positions, one process; reading and decoding the log, about 20 more, left out)."""


def _split(projections: Sequence[Projection], groups: int) -> list[list[Projection]]:
    """The views in at most ``groups`` groups of about equal work: the heaviest first, each into the lightest group.

    A view's work is its measured weight (WEIGHTS); a view not measured yet is guessed from the number of
    event types it folds, at the measured views' mean weight per type. The count alone, the guess used for
    every view before, put 3.7 s of the 6.7 s measured in one group and 3.1 s in the other; the weights
    split the same views 2.76 : 2.77.
    """
    count = max(1, min(groups, len(projections)))
    known = [p for p in projections if p.name in WEIGHTS]
    per_topic = sum(WEIGHTS[p.name] for p in known) / max(1, sum(len(p.topics) for p in known)) if known else 1.0

    def weight(projection: Projection) -> float:
        return WEIGHTS.get(projection.name, per_topic * len(projection.topics))

    split: list[list[Projection]] = [[] for _ in range(count)]
    load = [0.0] * count
    for projection in sorted(projections, key=lambda p: -weight(p)):
        lightest = load.index(min(load))
        split[lightest].append(projection)
        load[lightest] += weight(projection)
    return [group for group in split if group]


def _build_in_workers(
    source: LogSource, jobs: list[tuple[Path, list[str]]], end: int, progress: Progress | None
) -> list[float]:
    """Fold each group of views (by name) into its file in a process of its own, up to position ``end``.

    Returns the seconds each process took (to the nearest poll), to show how even the split was.
    """
    started = time.perf_counter()
    context = multiprocessing.get_context("spawn")
    reports: Any = context.Queue()
    processes = [
        context.Process(target=_build_group, args=(source, path, names, end, reports, i), daemon=True)
        for i, (path, names) in enumerate(jobs)
    ]
    for process in processes:
        process.start()
    reached = [0] * len(jobs)
    took = [0.0] * len(jobs)
    try:
        while any(process.is_alive() for process in processes) or not reports.empty():
            for i, process in enumerate(processes):
                if not took[i] and not process.is_alive():
                    took[i] = time.perf_counter() - started
            try:
                group, position = reports.get(timeout=0.2)
            except queue.Empty:
                continue
            reached[group] = position
            if progress is not None:
                progress(min(reached))
    finally:
        for process in processes:
            process.join(timeout=1)
            if process.is_alive():
                process.kill()
    failed = [p.exitcode for p in processes if p.exitcode != 0]
    if failed:
        raise RuntimeError(f"a build process failed (exit codes {failed}); see its log above")
    return [t or time.perf_counter() - started for t in took]


def _build_group(source: LogSource, path: Path, names: list[str], end: int, reports: Any, group: int) -> None:
    """In a worker process: open the log, fold the named views into ``path`` up to ``end``, reporting progress."""
    app: Any = source.open()
    projections = [
        p
        for p in default_projections(getattr(app, "catalogue", None), getattr(app, "calendar", None))
        if p.name in names
    ]
    remove_store(path)
    store = open_scratch(path, [type(p) for p in projections])
    try:
        EmbeddedRunner(
            app.recorder, app.mapper, store, projections, BATCH, stop=end,
            progress=lambda position: reports.put((group, position)),
        ).run_until_caught_up()  # fmt: skip
    finally:
        store.close()
        app.close()
