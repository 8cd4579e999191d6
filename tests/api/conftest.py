"""A simulated district served by a real uvicorn server on a free port, and tokens for any principal."""

from __future__ import annotations

import itertools
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest

from engine.clock import ManualClock
from ops.config import Settings, load_settings
from ops.presets import load_preset
from ops.runtime import open_runtime
from ops.serve import Service, serving
from ops.simulator import simulate
from projections.api.access import Principal, Role, add_token

LOCAL = ZoneInfo("Asia/Shanghai")
DAY = date(2026, 11, 2)
SEED = 7
SERVED_AT = datetime(2026, 11, 3, 9, 0, tzinfo=LOCAL)
"""The served clock: the morning after the simulated day (a manual clock: tests move it themselves)."""
DISTRICT = "140827"
"""Yuanqu (垣曲县): one street (140827100) with fifteen communities, in the simulated day."""


def settings_for(data_dir: Path, **overrides: object) -> Settings:
    return load_settings(environ={}, data_dir=data_dir, log_format="json", supervise_every=3600, **overrides)


@pytest.fixture(scope="session")
def district_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One simulated day of Yuanqu (seeded), with its views caught up; copied for each test that serves it."""
    data_dir = tmp_path_factory.mktemp("district")
    settings = settings_for(data_dir)
    clock = ManualClock(datetime.combine(DAY, datetime.min.time(), LOCAL).astimezone(UTC))
    rt = open_runtime(settings, clock)
    try:
        simulate(rt.app, clock, load_preset("yuanqu"), days=1, start=DAY, seed=SEED)
        rt.catch_up()
    finally:
        rt.close()
    return data_dir


@dataclass
class Api:
    """A served district: its base URL, the service behind it, and a way to mint tokens for principals."""

    url: str
    service: Service
    clock: ManualClock
    settings: Settings
    clients: list[httpx.Client] = field(default_factory=list)
    _numbers: Iterator[int] = field(default_factory=itertools.count)

    def token(self, role: Role | str, jurisdiction: str = DISTRICT, actor: str = "", name: str = "") -> str:
        role = Role(role)
        # A fresh name each time: adding a name again rotates its token (and revokes the earlier one).
        name = name or f"{role.value}@{jurisdiction}/{actor}#{next(self._numbers)}"
        principal = Principal(name, role, jurisdiction, actor or f"{role.value}:{jurisdiction}")
        return add_token(self.settings.token_file, principal)

    def client(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        client = httpx.Client(base_url=self.url, headers=headers, timeout=30)
        self.clients.append(client)
        return client

    def as_role(self, role: Role | str, jurisdiction: str = DISTRICT, actor: str = "") -> httpx.Client:
        return self.client(self.token(role, jurisdiction, actor))


@pytest.fixture
def district_dir(tmp_path: Path, district_template: Path) -> Path:
    target = tmp_path / "var"
    shutil.copytree(district_template, target)
    return target


@contextmanager
def served_district(data_dir: Path) -> Iterator[Api]:
    """The district in ``data_dir`` served on a free port by a real uvicorn server, in this process."""
    settings = settings_for(data_dir)
    clock = ManualClock(SERVED_AT.astimezone(UTC))
    with serving(settings, clock) as (service, url):
        served = Api(url, service, clock, settings)
        try:
            yield served
        finally:
            for client in served.clients:
                client.close()


def served_copy(district_template: Path, tmp_path_factory: pytest.TempPathFactory, name: str) -> Iterator[Api]:
    """A module's own copy of the simulated district, served once for all its tests (reads, and minted tokens)."""
    data_dir = tmp_path_factory.mktemp(name) / "var"
    shutil.copytree(district_template, data_dir)
    with served_district(data_dir) as served:
        yield served


@pytest.fixture
def api(district_dir: Path) -> Iterator[Api]:
    """The district served on a free port by a real uvicorn server, in this process."""
    with served_district(district_dir) as served:
        yield served
