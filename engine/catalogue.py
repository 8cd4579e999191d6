"""Category catalogue (案件分类): what may be reported, who handles it, how fast."""

from __future__ import annotations

import functools
import importlib.resources
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from engine.errors import UnknownReference

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
    "time_limit_hours",
    "department",
)


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
    time_limit_hours: float
    department: str
    skills: tuple[str, ...] = ()


@dataclass(frozen=True)
class Catalogue:
    """Categories and departments, looked up by code."""

    categories: Mapping[str, Category]
    departments: Mapping[str, Department]

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
    return Catalogue(MappingProxyType(categories), MappingProxyType(departments))


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


def _category(entry: Mapping[str, Any], where: str, departments: Mapping[str, Department]) -> Category:
    names = tuple(f for f in _CATEGORY_FIELDS if f != "time_limit_hours")
    fields = _strings(entry, names, where, (*_CATEGORY_FIELDS, "skills"))
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
    hours = entry.get("time_limit_hours")
    if isinstance(hours, bool) or not isinstance(hours, int | float) or not hours > 0:
        raise ValueError(f"{where}: time_limit_hours must be a positive number of working hours, got {hours!r}")
    skills = entry.get("skills", [])
    if not isinstance(skills, list) or not all(isinstance(s, str) and s for s in skills):
        raise ValueError(f"{where}: skills must be a list of non-empty strings, got {skills!r}")
    return Category(
        code=code,
        kind=kind,
        major=fields["major"],
        name=fields["name"],
        name_en=fields["name_en"],
        tier=tier,
        time_limit_hours=float(hours),
        department=department,
        skills=tuple(skills),
    )


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
