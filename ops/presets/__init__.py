"""Simulator presets: a district's divisions, communities, staff and rate assumptions."""

from __future__ import annotations

import dataclasses
import importlib.resources
import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.admission import packaged as packaged_admission
from engine.errors import UnknownReference

LEVELS: tuple[str, ...] = ("city", "district", "street")
_TOP_KEYS = ("title", "seed", "sources", "region", "street", "staff", "rates")
_STREET_KEYS = ("code", "name", "parent", "community")
_COUNT_KEYS = ("communities", "households_per_community", "grids_per_community")
_COMMUNITY_KEYS = ("name", "households", "grids", "illustrative_name")


@dataclass(frozen=True)
class CommunitySpec:
    """A community (社区): its street, households and number of grids."""

    code: str
    name: str
    street: str
    households: int
    grids: int
    illustrative_name: bool


@dataclass(frozen=True)
class DivisionSpec:
    """An administrative division above the community: city, district/county, street/town."""

    code: str
    name: str
    level: str
    parent: str | None


@dataclass(frozen=True)
class StaffSpec:
    """Head counts of the grid team (网格长, 网格员, 网格辅助员, 人民调解员)."""

    grid_leaders: int
    grid_workers: int
    grid_assistants: int
    mediators: int


@dataclass(frozen=True)
class Rates:
    """The simulator's daily rates; stated assumptions, not figures from the articles."""

    resident_requests_per_1000_households_per_day: float
    patrols_per_worker_per_day: float
    checkpoints_per_patrol: int
    finding_probability_per_checkpoint: float
    reject_rate: float
    merge_rate: float
    return_rate: float
    extension_rate: float
    suspend_rate: float
    rework_rate: float
    not_fixed_callback_rate: float
    escalation_rate: float


@dataclass(frozen=True)
class Preset:
    """A district's reference model for the simulator."""

    name: str
    title: str
    sources: tuple[str, ...]
    seed: int
    center: tuple[float, float]
    divisions: tuple[DivisionSpec, ...]
    communities: tuple[CommunitySpec, ...]
    staff: StaffSpec
    rates: Rates
    admission: str | None = None
    """The packaged admission catalogue (准入清单, engine.admission) its communities follow; None: no control."""

    def top(self) -> DivisionSpec:
        """The top division (the region the preset covers)."""
        return self.divisions[0]

    def total_households(self) -> int:
        """Households over all communities."""
        return sum(c.households for c in self.communities)

    def total_grids(self) -> int:
        """Grids over all communities."""
        return sum(c.grids for c in self.communities)


def available_presets() -> tuple[str, ...]:
    """Names of the packaged presets, sorted."""
    folder = importlib.resources.files("ops.presets")
    names = (e.name[: -len(".toml")] for e in folder.iterdir() if e.name.endswith(".toml"))
    return tuple(sorted(names))


def load_preset(name: str) -> Preset:
    """A packaged preset by name; UnknownReference lists the available ones."""
    available = available_presets()
    if name not in available:
        raise UnknownReference("preset", name, allowed=available)
    resource = importlib.resources.files("ops.presets") / f"{name}.toml"
    return _parse(resource.read_text(encoding="utf-8"), str(resource), name)


def load_preset_file(path: Path) -> Preset:
    """A preset from any file; its name is the file's stem."""
    return _parse(path.read_text(encoding="utf-8"), str(path), path.stem)


def _parse(text: str, source: str, name: str) -> Preset:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{source}: not valid TOML: {exc}") from exc
    _keys(data, _TOP_KEYS, ("division", "admission"), f"{source}: top level")
    sources = data.get("sources", [])
    if not isinstance(sources, list) or not all(isinstance(s, str) for s in sources):
        raise ValueError(f"{source}: sources must be a list of strings")
    region = _table(data.get("region"), f"{source}: [region]")
    where = f"{source}: [region]"
    _keys(region, ("code", "name", "level", "center"), (), where)
    center = region["center"]
    if not isinstance(center, list) or len(center) != 2 or not all(_number(v) for v in center):
        raise ValueError(f"{where}: center must be [lon, lat], got {center!r}")
    top = _division(region, None, where)
    divisions = [top]
    for i, entry in enumerate(_tables(data, "division", source)):
        where = f"{source}: [[division]] #{i + 1} ({entry.get('code', '?')!r})"
        _keys(entry, ("code", "name", "level", "parent"), (), where)
        divisions.append(_division(entry, _str(entry, "parent", where), where))
    communities: list[CommunitySpec] = []
    for i, entry in enumerate(_tables(data, "street", source)):
        where = f"{source}: [[street]] #{i + 1} ({entry.get('code', '?')!r})"
        street = _street(entry, top.code, where)
        divisions.append(street)
        communities.extend(_communities(entry, street, where))
    _check_tree(divisions, communities, source)
    return Preset(
        name=name,
        title=_str(data, "title", source),
        sources=tuple(sources),
        seed=_int(data, "seed", source, minimum=0),
        center=(float(center[0]), float(center[1])),
        divisions=tuple(divisions),
        communities=tuple(communities),
        staff=StaffSpec(**_ints(data.get("staff"), StaffSpec, f"{source}: [staff]")),
        rates=_rates(data.get("rates"), f"{source}: [rates]"),
        admission=_admission(data, source),
    )


def _admission(data: Mapping[str, Any], source: str) -> str | None:
    if "admission" not in data:
        return None
    name = data["admission"]
    allowed = packaged_admission()
    if name not in allowed:
        raise ValueError(
            f"{source}: admission must name a packaged admission catalogue, got {name!r}; allowed: {', '.join(allowed)}"
        )
    return str(name)


def _division(entry: Mapping[str, Any], parent: str | None, where: str) -> DivisionSpec:
    level = _str(entry, "level", where)
    if level not in LEVELS:
        raise ValueError(f"{where}: unknown level {level!r}; allowed: {', '.join(LEVELS)}")
    return DivisionSpec(_str(entry, "code", where), _str(entry, "name", where), level, parent)


def _street(entry: Mapping[str, Any], top: str, where: str) -> DivisionSpec:
    _keys(entry, ("code", "name"), (*_STREET_KEYS, *_COUNT_KEYS), where)
    parent = _str(entry, "parent", where) if "parent" in entry else top
    return DivisionSpec(_str(entry, "code", where), _str(entry, "name", where), "street", parent)


def _communities(entry: Mapping[str, Any], street: DivisionSpec, where: str) -> list[CommunitySpec]:
    listed = "community" in entry
    counted = any(k in entry for k in _COUNT_KEYS)
    if listed == counted:
        raise ValueError(
            f"{where}: give either [[street.community]] entries or all of {', '.join(_COUNT_KEYS)}, not both or neither"
        )
    if counted:
        count = _int(entry, "communities", where, minimum=1)
        households = _int(entry, "households_per_community", where, minimum=1)
        grids = _int(entry, "grids_per_community", where, minimum=1)
        rows = [(f"{street.name}第{n}社区", households, grids, True) for n in range(1, count + 1)]
    else:
        rows = []
        for j, item in enumerate(_tables(entry, "community", where)):
            at = f"{where} [[street.community]] #{j + 1} ({item.get('name', '?')!r})"
            _keys(item, ("name", "households", "grids"), _COMMUNITY_KEYS, at)
            flag = item.get("illustrative_name", False)
            if not isinstance(flag, bool):
                raise ValueError(f"{at}: illustrative_name must be true or false")
            rows.append(
                (
                    _str(item, "name", at),
                    _int(item, "households", at, minimum=1),
                    _int(item, "grids", at, minimum=1),
                    flag,
                )
            )
    if not 1 <= len(rows) <= 999:
        raise ValueError(f"{where}: a street holds 1 to 999 communities, got {len(rows)}")
    return [
        CommunitySpec(f"{street.code}{n:03d}", name, street.code, households, grids, flag)
        for n, (name, households, grids, flag) in enumerate(rows, start=1)
    ]


def _check_tree(divisions: list[DivisionSpec], communities: list[CommunitySpec], source: str) -> None:
    """Codes unique; every parent (and every community's street) defined before use."""
    seen: dict[str, DivisionSpec] = {}
    for division in divisions:
        where = f"{source}: division {division.code!r} ({division.name})"
        if division.code in seen:
            raise ValueError(f"{where}: duplicate code; division codes must be unique")
        if division.parent is not None:
            parent = seen.get(division.parent)
            if parent is None:
                known = ", ".join(seen)
                raise ValueError(f"{where}: unknown parent {division.parent!r}; known: {known}")
            if LEVELS.index(parent.level) >= LEVELS.index(division.level):
                raise ValueError(
                    f"{where}: a {division.level} cannot sit under a {parent.level}; "
                    f"levels from the top: {', '.join(LEVELS)}"
                )
        seen[division.code] = division
    streets = {d.code for d in divisions if d.level == "street"}
    codes = set(seen)
    for community in communities:
        where = f"{source}: community {community.code!r} ({community.name})"
        if community.code in codes:
            raise ValueError(f"{where}: duplicate code; codes must be unique")
        if community.street not in streets:
            known = ", ".join(sorted(streets))
            raise ValueError(f"{where}: unknown street {community.street!r}; known: {known}")
        codes.add(community.code)


def _rates(table: object, where: str) -> Rates:
    values: dict[str, Any] = {}
    table = _table(table, where)
    names = tuple(f.name for f in dataclasses.fields(Rates))
    _keys(table, names, (), where)
    for field in dataclasses.fields(Rates):
        if field.type == "int":
            values[field.name] = _int(table, field.name, where, minimum=0)
            continue
        value = table[field.name]
        if not _number(value) or value < 0:
            raise ValueError(f"{where}: {field.name} must be a number >= 0, got {value!r}")
        if field.name.endswith(("_rate", "_probability_per_checkpoint")) and value > 1:
            raise ValueError(f"{where}: {field.name} is a share in [0, 1], got {value!r}")
        values[field.name] = float(value)
    return Rates(**values)


def _ints(table: object, cls: type[StaffSpec], where: str) -> dict[str, int]:
    table = _table(table, where)
    names = tuple(f.name for f in dataclasses.fields(cls))
    _keys(table, names, (), where)
    return {name: _int(table, name, where, minimum=0) for name in names}


def _keys(table: Mapping[str, Any], required: tuple[str, ...], optional: tuple[str, ...], where: str) -> None:
    allowed = (*required, *optional)
    unknown = sorted(set(table) - set(allowed))
    missing = [k for k in required if k not in table]
    problems = [f"unknown field(s) {unknown}"] if unknown else []
    problems += [f"missing field(s) {missing}"] if missing else []
    if problems:
        raise ValueError(f"{where}: {'; '.join(problems)}; required: {list(required)}, optional: {list(optional)}")


def _table(value: object, where: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise ValueError(f"{where}: missing or not a table")
    return value


def _tables(data: Mapping[str, Any], key: str, where: str) -> list[Mapping[str, Any]]:
    tables = data.get(key, [])
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise ValueError(f"{where}: {key!r} must be an array of tables ([[{key}]])")
    return tables


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _str(table: Mapping[str, Any], key: str, where: str) -> str:
    value = table.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{where}: {key} must be a non-empty string, got {value!r}")
    return value


def _int(table: Mapping[str, Any], key: str, where: str, minimum: int) -> int:
    value = table.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{where}: {key} must be an integer >= {minimum}, got {value!r}")
    return value
