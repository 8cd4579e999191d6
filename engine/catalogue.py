"""Category catalogue (案件分类): what may be reported, who handles it, how fast."""

from __future__ import annotations

import functools
import importlib.resources
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Any

from engine.errors import UnknownReference
from engine.working_time import WorkingCalendar

KINDS: Mapping[str, str] = MappingProxyType({"component": "C", "event": "E", "service": "S"})
TIERS: tuple[str, ...] = ("emergency", "normal")
GRID = "grid"
"""The handling unit of a category the grid worker (网格员) handles himself."""

_CODE = re.compile(r"^[CES][0-9]{4}$")
_DEPARTMENT_FIELDS = ("code", "name", "name_en")
_CATEGORY_FIELDS = (
    "code",
    "kind",
    "major",
    "name",
    "name_en",
    "tier",
    "department",
)
_CATEGORY_OPTIONAL = ("time_limit_hours", "time_limit_days", "skills", "key")
_STEP_FIELDS = ("name", "emergency_minutes", "normal_minutes", "rural_minutes")
_ALLOWANCE_FIELDS = ("return_within_days", "extension_up_to_days", "call_back_within_days")


@dataclass(frozen=True)
class Department:
    """A department (专业部门) handling cases beyond a grid worker's power."""

    code: str
    name: str
    name_en: str


@dataclass(frozen=True)
class Category:
    """One 小类 of the catalogue: code = kind letter + 大类 2 digits + 小类 2 digits."""

    code: str
    kind: str
    major: str
    name: str
    name_en: str
    tier: str
    time_limit_hours: float | None  # working hours; None when the limit is given in working days
    department: str
    skills: tuple[str, ...] = ()
    time_limit_days: int | None = None  # working days (normal categories only); None when given in hours
    key: bool = False  # 重点案件: supervised more closely, escalated earlier

    def __post_init__(self) -> None:
        if (self.time_limit_hours is None) == (self.time_limit_days is None):
            raise ValueError(f"category {self.code}: give exactly one of time_limit_hours and time_limit_days")


@dataclass(frozen=True)
class Step:
    """The time limit of one step of the closed loop (立案+派遣, 签收, 核查), in working minutes per tier."""

    name: str
    emergency_minutes: int
    normal_minutes: int
    rural_minutes: int | None = None  # one limit for rural grids whatever the tier (核查 2 h); None: as urban

    def limit(self, tier: str, *, rural: bool = False) -> timedelta:
        if rural and self.rural_minutes is not None:
            return timedelta(minutes=self.rural_minutes)
        return timedelta(minutes=self.emergency_minutes if tier == "emergency" else self.normal_minutes)


@dataclass(frozen=True)
class Allowances:
    """How long a unit may take to return a case (退单), how far an extension (延期) may go, and how soon a closed
    case is called back (回访), in working days."""

    return_within_days: int = 2
    extension_up_to_days: int = 10
    call_back_within_days: int = 3


@dataclass(frozen=True)
class Catalogue:
    """Categories and departments, looked up by code."""

    categories: Mapping[str, Category]
    departments: Mapping[str, Department]
    steps: Mapping[str, Step] = field(default_factory=lambda: MappingProxyType({}))
    allowances: Allowances = Allowances()

    def category(self, code: str) -> Category:
        """The category with this code; UnknownReference lists the known codes."""
        try:
            return self.categories[code]
        except KeyError:
            raise UnknownReference("category", code, allowed=sorted(self.categories)) from None

    def department(self, code: str) -> Department:
        """The department with this code; UnknownReference lists the known codes."""
        try:
            return self.departments[code]
        except KeyError:
            raise UnknownReference("department", code, allowed=sorted(self.departments)) from None

    def is_unit(self, code: str) -> bool:
        """True when the code names a department (a handling unit), not the grid."""
        return code in self.departments

    def deadline(self, category_code: str, start: datetime, calendar: WorkingCalendar) -> datetime:
        """The category's default deadline from ``start``: its working hours or working days on ``calendar``."""
        category = self.category(category_code)
        if category.time_limit_days is not None:
            return calendar.add_days(start, category.time_limit_days)
        assert category.time_limit_hours is not None  # a category holds exactly one of the two
        return calendar.add(start, timedelta(hours=category.time_limit_hours))

    def step_limit(self, step: str, tier: str, *, rural: bool = False) -> timedelta:
        """The working time allowed for a step at a tier; ``rural`` for a rural grid, where a step may allow more."""
        if tier not in TIERS:
            raise UnknownReference("tier", tier, allowed=TIERS)
        try:
            return self.steps[step].limit(tier, rural=rural)
        except KeyError:
            raise UnknownReference("step", step, allowed=sorted(self.steps)) from None

    def return_by(self, dispatched_at: datetime, calendar: WorkingCalendar) -> datetime:
        """The last moment a unit may return (退单) a case dispatched at ``dispatched_at``."""
        return calendar.add_days(dispatched_at, self.allowances.return_within_days)

    def latest_extension(self, due: datetime, calendar: WorkingCalendar) -> datetime:
        """The furthest an extension (延期) may move a case due at ``due``."""
        return calendar.add_days(due, self.allowances.extension_up_to_days)

    def call_back_by(self, closed_at: datetime, calendar: WorkingCalendar) -> datetime:
        """The time by which a case closed at ``closed_at`` is to be called back (回访)."""
        return calendar.add_days(closed_at, self.allowances.call_back_within_days)

    @classmethod
    def load(cls, path: Path | None = None) -> Catalogue:
        """Read and validate a catalogue file (default: the packaged one)."""
        if path is None:
            resource = importlib.resources.files("engine") / "data" / "categories.toml"
            return _parse(resource.read_text(encoding="utf-8"), str(resource))
        return _parse(path.read_text(encoding="utf-8"), str(path))


@functools.cache
def default_catalogue() -> Catalogue:
    """The packaged catalogue, loaded once."""
    return Catalogue.load()


def _parse(text: str, source: str) -> Catalogue:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{source}: not valid TOML: {exc}") from exc
    departments: dict[str, Department] = {}
    for index, entry in enumerate(_tables(data, "department", source)):
        where = f"{source}: [[department]] #{index + 1} ({entry.get('code', '?')!r})"
        fields = _strings(entry, _DEPARTMENT_FIELDS, where, _DEPARTMENT_FIELDS)
        if fields["code"] in departments or fields["code"] == GRID:
            raise ValueError(f"{where}: duplicate or reserved department code; codes must be unique")
        departments[fields["code"]] = Department(**fields)
    categories: dict[str, Category] = {}
    for index, entry in enumerate(_tables(data, "category", source)):
        where = f"{source}: [[category]] #{index + 1} ({entry.get('code', '?')!r})"
        category = _category(entry, where, departments)
        if category.code in categories:
            raise ValueError(f"{where}: duplicate category code; codes must be unique")
        categories[category.code] = category
    _check_majors(categories.values(), source)
    steps: dict[str, Step] = {}
    for index, entry in enumerate(_tables(data, "step", source)):
        where = f"{source}: [[step]] #{index + 1} ({entry.get('name', '?')!r})"
        step = _step(entry, where)
        if step.name in steps:
            raise ValueError(f"{where}: duplicate step name; names must be unique")
        steps[step.name] = step
    allowances = _allowances(data.get("allowances", {}), f"{source}: [allowances]")
    return Catalogue(MappingProxyType(categories), MappingProxyType(departments), MappingProxyType(steps), allowances)


def _tables(data: Mapping[str, Any], key: str, source: str) -> list[Mapping[str, Any]]:
    tables = data.get(key, [])
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise ValueError(f"{source}: {key!r} must be an array of tables ([[{key}]])")
    return tables


def _strings(
    entry: Mapping[str, Any],
    names: tuple[str, ...],
    where: str,
    allowed: tuple[str, ...],
) -> dict[str, str]:
    unknown = set(entry) - set(allowed)
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {sorted(unknown)}; allowed: {list(allowed)}")
    fields: dict[str, str] = {}
    for name in names:
        value = entry.get(name)
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"{where}: field {name!r} must be a non-empty string, got {value!r}")
        fields[name] = value
    return fields


def _whole(value: object, where: str, name: str, unit: str) -> int:
    """A positive whole number from a data file, named in the complaint when it is not one."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{where}: {name} must be a positive whole number of {unit}, got {value!r}")
    return value


def _category(entry: Mapping[str, Any], where: str, departments: Mapping[str, Department]) -> Category:
    fields = _strings(entry, _CATEGORY_FIELDS, where, (*_CATEGORY_FIELDS, *_CATEGORY_OPTIONAL))
    code, kind, tier = fields["code"], fields["kind"], fields["tier"]
    department = fields["department"]
    if kind not in KINDS:
        raise ValueError(f"{where}: unknown kind {kind!r}; allowed: {', '.join(KINDS)}")
    if not _CODE.match(code) or code[0] != KINDS[kind]:
        raise ValueError(
            f"{where}: code must be {KINDS[kind]!r} (kind {kind}) + 2-digit 大类 + 2-digit 小类, e.g. {KINDS[kind]}0101"
        )
    if tier not in TIERS:
        raise ValueError(f"{where}: unknown tier {tier!r}; allowed: {', '.join(TIERS)}")
    if department != GRID and department not in departments:
        allowed = ", ".join([GRID, *sorted(departments)])
        raise ValueError(f"{where}: unknown department {department!r}; allowed: {allowed}")
    hours, days = _time_limit(entry, where, tier)
    skills = entry.get("skills", [])
    if not isinstance(skills, list) or not all(isinstance(s, str) and s for s in skills):
        raise ValueError(f"{where}: skills must be a list of non-empty strings, got {skills!r}")
    key = entry.get("key", False)
    if not isinstance(key, bool):
        raise ValueError(f"{where}: key must be true or false, got {key!r}")
    return Category(
        code=code,
        kind=kind,
        major=fields["major"],
        name=fields["name"],
        name_en=fields["name_en"],
        tier=tier,
        time_limit_hours=hours,
        department=department,
        skills=tuple(skills),
        time_limit_days=days,
        key=key,
    )


def _time_limit(entry: Mapping[str, Any], where: str, tier: str) -> tuple[float | None, int | None]:
    """Exactly one of time_limit_hours (working hours) and time_limit_days (working days, normal tier only)."""
    given = [name for name in ("time_limit_hours", "time_limit_days") if name in entry]
    if len(given) != 1:
        problem = "gives both" if given else "gives neither"
        raise ValueError(
            f"{where}: {problem} of time_limit_hours and time_limit_days; "
            "give exactly one: time_limit_hours (working hours) or time_limit_days (working days, normal tier only)"
        )
    if given == ["time_limit_days"]:
        if tier == "emergency":
            raise ValueError(f"{where}: an emergency category counts in working hours; use time_limit_hours")
        return None, _whole(entry["time_limit_days"], where, "time_limit_days", "working days")
    hours = entry["time_limit_hours"]
    if isinstance(hours, bool) or not isinstance(hours, int | float) or not hours > 0:
        raise ValueError(f"{where}: time_limit_hours must be a positive number of working hours, got {hours!r}")
    return float(hours), None


def _step(entry: Mapping[str, Any], where: str) -> Step:
    unknown = set(entry) - set(_STEP_FIELDS)
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {sorted(unknown)}; allowed: {list(_STEP_FIELDS)}")
    name = entry.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"{where}: field 'name' must be a non-empty string, got {name!r}")
    rural = entry.get("rural_minutes")
    return Step(
        name=name,
        emergency_minutes=_whole(entry.get("emergency_minutes"), where, "emergency_minutes", "working minutes"),
        normal_minutes=_whole(entry.get("normal_minutes"), where, "normal_minutes", "working minutes"),
        rural_minutes=None if rural is None else _whole(rural, where, "rural_minutes", "working minutes"),
    )


def _allowances(table: object, where: str) -> Allowances:
    if not isinstance(table, dict):
        raise ValueError(f"{where}: must be a table of {', '.join(_ALLOWANCE_FIELDS)}")
    unknown = set(table) - set(_ALLOWANCE_FIELDS)
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {sorted(unknown)}; allowed: {list(_ALLOWANCE_FIELDS)}")
    return Allowances(**{name: _whole(value, where, name, "working days") for name, value in table.items()})


def _check_majors(categories: Iterable[Category], source: str) -> None:
    """One 大类 code means one 大类 name within a kind."""
    majors: dict[str, str] = {}
    for category in categories:
        prefix = category.code[:3]
        seen = majors.setdefault(prefix, category.major)
        if seen != category.major:
            raise ValueError(
                f"{source}: [[category]] {category.code!r}: 大类 {prefix} is "
                f"{seen!r} elsewhere, not {category.major!r}; "
                "one 大类 code must have one name"
            )
