"""A Gridloop app on a real SQLite file, a district to govern, and a story that walks every lifecycle path.

The view stores the tests fold into come in both kinds: the ``views`` and ``played`` fixtures are parametrized
over SQLite and PostgreSQL, so every test that uses them runs on each.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import psycopg
import pytest

from engine import commands as c
from engine.application import CommandResult, Gridloop
from engine.clock import ManualClock
from ops.postgres import Server
from projections.runner import EmbeddedRunner
from projections.store import Views, ViewStore
from projections.store_postgres import PostgresViewStore
from projections.views import default_projections

T0 = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)
DISTRICT, STREET = "140827", "140827100"
EAST, WEST = "140827100001", "140827100002"
G1, G2, G3 = "140827100001001", "140827100001002", "140827100002001"
DESK = "op:desk1"
# Story.city: a city, a district in it, a street, a community and a grid (the district of Story.world has no city).
CITY, COUNTY, TOWN, VILLAGE, G4 = "1408", "140828", "140828100", "140828100001", "140828100001001"
SQUARE = '{"type":"Polygon","coordinates":[[[111.0,35.0],[111.1,35.0],[111.1,35.1],[111.0,35.0]]]}'
WORKERS = {"W1": G1, "W2": G2, "W3": G3}


@dataclass(frozen=True)
class Place:
    """The district the stories happen in, for tests to name grids and communities."""

    district: str = DISTRICT
    street: str = STREET
    east: str = EAST
    west: str = WEST
    g1: str = G1
    g2: str = G2
    g3: str = G3
    desk: str = f"desk:{DISTRICT}"
    city: str = CITY
    county: str = COUNTY
    town: str = TOWN
    village: str = VILLAGE
    g4: str = G4
    square: str = SQUARE


@pytest.fixture(scope="session")
def place() -> Place:
    return Place()


@dataclass
class Story:
    """An event store with a clock, and helpers that read like the dispatch desk's day."""

    app: Gridloop
    clock: ManualClock
    after_each: Callable[[Story], object] | None = None
    cases: dict[str, UUID] = field(default_factory=dict)
    results: list[CommandResult] = field(default_factory=list)

    def do(self, command_class: type[c.Command], **fields: Any) -> CommandResult:
        """Run one command, five minutes after the previous one."""
        self.clock.advance(timedelta(minutes=5))
        command = command_class(command_id=f"cmd-{len(self.results) + 1}", **fields)
        result = self.app.execute(command)
        self.results.append(result)
        if self.after_each is not None:
            self.after_each(self)
        return result

    def on(self, name: str, command_class: type[c.CaseCommand], **fields: Any) -> CommandResult:
        """Run a command on the case called ``name`` (the desk acts unless an actor is given)."""
        fields.setdefault("actor", DESK)
        return self.do(command_class, case_id=self.cases[name], **fields)

    def report(self, name: str, grid: str = G1, category: str = "C0101", **fields: Any) -> UUID:
        fields = {"actor": "resident:13800000000", "source": "resident", "description": f"{name}: 井盖缺失", **fields}
        self.cases[name] = self.do(c.ReportCase, grid=grid, category=category, **fields).aggregate_id
        return self.cases[name]

    def dispatch(self, name: str, worker: str = "", unit: str = "", hours: float = 72, **fields: Any) -> None:
        deadline = self.clock.now() + timedelta(hours=hours)
        fields.setdefault("reason", f"grid worker of {worker}'s grid" if worker else "the unit in charge")
        self.on(name, c.DispatchCase, worker=worker, unit=unit, deadline=deadline, **fields)

    def handle_and_close(self, name: str, worker: str) -> None:
        self.on(name, c.ReportHandling, actor=worker, result="处置完毕", photos=[f"{name}-after.jpg"])
        self.on(name, c.VerifyCase, passed=True, note="核查通过")

    def world(self) -> Story:
        """A district, one street, two communities, three grids, a worker on duty in each grid."""
        admin = {"actor": "admin"}
        self.do(c.EstablishDivision, code=DISTRICT, division_name="垣曲县", level="district", **admin)
        self.do(c.EstablishDivision, code=STREET, division_name="新城镇", level="street", parent=DISTRICT, **admin)
        for code, name in ((EAST, "东峰山社区"), (WEST, "西峰山社区")):
            self.do(c.EstablishDivision, code=code, division_name=name, level="community", parent=STREET, **admin)
        for code, community in ((G1, EAST), (G2, EAST), (G3, WEST)):
            boundary = '{"type":"Polygon","coordinates":[[[111.6,35.3],[111.7,35.3],[111.7,35.4],[111.6,35.3]]]}'
            self.do(
                c.DrawGrid, code=code, grid_name=code[-3:], community=community, households=480, boundary=boundary,
                **admin,
            )  # fmt: skip
        for worker, grid in WORKERS.items():
            community = EAST if grid != G3 else WEST
            self.do(
                c.EnrollWorker, code=worker, worker_name=worker, role="grid_worker", unit=community, grid=grid,
                **admin,
            )  # fmt: skip
            self.do(c.SetDuty, worker=worker, on_duty=True, **admin)
        return self

    def city(self) -> Story:
        """A city with a district of its own, one street, one community, one grid with a worker (W4) on duty."""
        admin = {"actor": "admin"}
        self.do(c.EstablishDivision, code=CITY, division_name="运城市", level="city", **admin)
        self.do(c.EstablishDivision, code=COUNTY, division_name="夏县", level="district", parent=CITY, **admin)
        self.do(c.EstablishDivision, code=TOWN, division_name="瑶峰镇", level="street", parent=COUNTY, **admin)
        self.do(c.EstablishDivision, code=VILLAGE, division_name="东关村", level="community", parent=TOWN, **admin)
        self.do(c.DrawGrid, code=G4, grid_name="001", community=VILLAGE, households=350, boundary=SQUARE, **admin)
        self.do(c.EnrollWorker, code="W4", worker_name="W4", role="grid_worker", unit=VILLAGE, grid=G4, **admin)
        self.do(c.SetDuty, worker="W4", on_duty=True, **admin)
        return self

    def every_path(self) -> Story:
        """Reject, merge, dispatch, return, reassign, extensions, suspend/resume, rework, call-backs, escalation."""
        self.report("rejected")
        self.on("rejected", c.RejectCase, reason_code="not_admitted", reason="小区内部设施, 物业负责")

        self.report("original")
        self.on("original", c.RegisterCase)
        self.report("duplicate")
        self.on("duplicate", c.MergeCase, into_case=self.cases["original"])
        self.dispatch(
            "original", worker="W1", policy="nearest_on_duty", policy_version="1.2", inputs={"distance_m": "120"}
        )
        self.on("original", c.AcceptCase, actor="W1")
        self.handle_and_close("original", "W1")
        self.on("original", c.CallBack, satisfaction=5, fixed=True, note="满意")

        self.report("returned", grid=G2)
        self.on("returned", c.RegisterCase, category="C0102")
        self.dispatch("returned", unit="chengguan")
        self.on("returned", c.ReturnCase, actor="unit:chengguan", reason="不属于本单位职责")
        self.dispatch("returned", worker="W2", unit=EAST)  # both: the worker is accountable, not the unit
        self.on("returned", c.AcceptCase, actor="W2")

        self.report("reassigned", grid=G2)
        self.on("reassigned", c.RegisterCase)
        self.dispatch("reassigned", worker="W1")
        self.on("reassigned", c.ReassignCase, worker="W2", reason="W1 请假")
        self.on("reassigned", c.AcceptCase, actor="W2")
        self.on("reassigned", c.RequestExtension, actor="W2", until=T0 + timedelta(days=10), reason="等待配件")
        self.on("reassigned", c.GrantExtension, note="同意")
        self.on("reassigned", c.RequestExtension, actor="W2", until=T0 + timedelta(days=20), reason="再等等")
        self.on("reassigned", c.DenyExtension, reason="不再延期")
        self.on("reassigned", c.ReportHandling, actor="W2", result="已更换", photos=["a.jpg", "b.jpg"])
        self.on("reassigned", c.VerifyCase, passed=False, note="仍在漏水")
        self.dispatch("reassigned", worker="W2", reason="返工")
        self.on("reassigned", c.AcceptCase, actor="W2")
        self.handle_and_close("reassigned", "W2")

        self.report("suspended", grid=G3)
        self.on("suspended", c.RegisterCase)
        self.dispatch("suspended", worker="W3")
        self.on("suspended", c.AcceptCase, actor="W3")
        self.on("suspended", c.SuspendCase, reason="等待资金")
        self.on("suspended", c.ResumeCase, note="资金到位")

        self.report("parked", grid=G3)
        self.on("parked", c.RegisterCase)
        self.on("parked", c.SuspendCase, reason="涉诉, 等待判决")

        self.report("not_fixed", grid=G3)
        self.on("not_fixed", c.RegisterCase)
        self.dispatch("not_fixed", worker="W3")
        self.on("not_fixed", c.AcceptCase, actor="W3")
        self.handle_and_close("not_fixed", "W3")
        self.on("not_fixed", c.MissCallBack, reason="no_answer")  # 回访未果: tried again later
        self.on("not_fixed", c.CallBack, satisfaction=2, fixed=False, note="没修好")

        self.report("complaint")
        self.on("complaint", c.RegisterCase)
        self.dispatch("complaint", worker="W1")
        self.on("complaint", c.AcceptCase, actor="W1")
        self.handle_and_close("complaint", "W1")
        self.on("complaint", c.ReopenCase, reason="居民投诉")
        self.dispatch("complaint", worker="W1", reason="返工")

        self.report("escalated")
        self.on("escalated", c.RegisterCase)
        self.dispatch("escalated", worker="W1", hours=1)
        self.clock.advance(timedelta(hours=3))
        self.on("escalated", c.EscalateCase, actor="supervisor", level=1, reason="超期未处置")
        self.on("escalated", c.EscalateCase, actor="supervisor", level=3, reason="街道督办")

        patrol = self.do(c.StartPatrol, actor="W3", worker="W3", grid=G3).aggregate_id
        late = self.clock.now() - timedelta(hours=2)  # seen two hours ago; uploaded five minutes from now
        finding = self.do(
            c.ReportFinding, actor="W3", patrol_id=patrol, category="C0101", description="路面坑洼", occurred_at=late
        )
        self.cases["late_upload"] = finding.aggregate_id
        self.do(c.EndPatrol, actor="W3", patrol_id=patrol)

        self.report("waiting", grid=G2)
        return self

    def supervision_paths(self) -> Story:
        """The dispatch-and-supervision events: a deadline warning, a recategorisation, a 全县通办 request."""
        self.report("warned")
        self.on("warned", c.RegisterCase)
        self.dispatch("warned", worker="W1", hours=1)
        self.clock.advance(timedelta(hours=2))
        self.on(
            "warned", c.WarnDeadline, actor="policy:supervisor", step="handle", threshold=100,
            due=self.clock.now() - timedelta(hours=2), policy="supervisor", policy_version="1",
        )  # fmt: skip

        self.report("recategorised", grid=G2)
        self.on("recategorised", c.RecategoriseCase, category="C0102", reason="实为井盖破损")
        self.on("recategorised", c.RegisterCase)

        self.report("tongban", grid=G1, category="S0303", service_item="TB01", registered_in=G3)
        self.on("tongban", c.RegisterCase)
        self.on("tongban", c.HandOverCase, reason="居住地受理, 转户籍地办理")
        unit = self.app.case(self.cases["tongban"]).unit
        self.on("tongban", c.AcceptCase, actor=f"unit:{unit}")
        self.on("tongban", c.ReportHandling, actor=f"unit:{unit}", result="已审批")
        self.on("tongban", c.VerifyCase, passed=True, note="受理地办结")
        return self


def event_store(path: Path, clock: ManualClock) -> Gridloop:
    return Gridloop({"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(path)}, clock=clock)


def follow(app: Gridloop, store: Views, batch_size: int = 500) -> EmbeddedRunner:
    return EmbeddedRunner(app.recorder, app.mapper, store, default_projections(), batch_size=batch_size)


@pytest.fixture
def story(tmp_path: Path) -> Iterator[Story]:
    """A district set up on a fresh event store; no cases yet."""
    clock = ManualClock(T0)
    app = event_store(tmp_path / "events.sqlite", clock)
    yield Story(app, clock).world()
    app.close()


STORES = ["sqlite", "postgres"]
"""The kinds of view store every view test runs on."""


def postgres_views(server: Server, schema: str) -> PostgresViewStore:
    """A view store in ``schema`` of the test server's database."""
    return PostgresViewStore.connect(
        host=server.host, port=server.port, user=server.user, password=server.password, dbname=server.dbname,
        schema=schema,
    )  # fmt: skip


@pytest.fixture(params=STORES)
def views(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Views]:
    """An empty view store, SQLite's or PostgreSQL's (in a schema of its own)."""
    store: Views
    if request.param == "postgres":
        store = postgres_views(request.getfixturevalue("postgres"), request.getfixturevalue("pg_schema"))
    else:
        store = ViewStore.open(tmp_path / "views.sqlite")
    yield store
    store.close()


@contextmanager
def module_schema(server: Server, name: str) -> Iterator[str]:
    """A schema for a module-scoped fixture (pg_schema is per test), dropped when the module is done."""
    schema = f"m_{name}_{uuid4().hex[:8]}"
    with psycopg.connect(server.dsn, autocommit=True) as connection:
        connection.execute(f"CREATE SCHEMA {schema}")
    try:
        yield schema
    finally:
        with psycopg.connect(server.dsn, autocommit=True) as connection:
            connection.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


@dataclass
class Played:
    """The whole story, with views that followed it command by command."""

    story: Story
    store: Views
    runner: EmbeddedRunner
    path: Path


@pytest.fixture(scope="module", params=STORES)
def played(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Played]:
    """Every lifecycle path played once per test module and kind of store, the runner catching up after each
    command."""
    path = tmp_path_factory.mktemp("played")
    clock = ManualClock(T0)
    app = event_store(path / "events.sqlite", clock)
    with ExitStack() as stack:
        store: Views
        if request.param == "postgres":
            server = request.getfixturevalue("postgres")
            store = postgres_views(server, stack.enter_context(module_schema(server, "played")))
        else:
            store = ViewStore.open(path / "views.sqlite")
        stack.callback(store.close)
        runner = follow(app, store, batch_size=7)
        story = Story(app, clock, after_each=lambda _: runner.run_until_caught_up()).world().every_path()
        story.after_each = None
        yield Played(story, store, runner, path)
    app.close()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "sqlite_only: a test of what only the SQLite store has (rebuild by ATTACH, as-of replay files)"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A test marked sqlite_only runs on the SQLite store only: its PostgreSQL parametrization is deselected."""
    keep: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        callspec = getattr(item, "callspec", None)
        stores = {callspec.params.get("views"), callspec.params.get("played")} if callspec is not None else set()
        on_postgres = "postgres" in stores
        (dropped if on_postgres and item.get_closest_marker("sqlite_only") else keep).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep
