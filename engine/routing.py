"""Routing (派遣规则): which unit takes a case, from its category and area; which grid a point lies in."""

from __future__ import annotations

import importlib.resources
import json
import re
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Stubs for shapely (types-shapely) are optional here; both with and without them mypy is clean.
import shapely  # type: ignore[import-untyped, unused-ignore]
from shapely import STRtree  # type: ignore[import-untyped, unused-ignore]
from shapely.geometry import Point, shape  # type: ignore[import-untyped, unused-ignore]

from engine.catalogue import GRID, KINDS, Catalogue, Category
from engine.errors import InvalidCommand, UnknownReference
from engine.geo import check_boundary, check_location

ANY = "*"
AREA_LEVELS = ("grid", "community", "street", "district")
"""Levels an area selector can match, most specific first."""
_LEVEL_NAMES: Mapping[str, str] = {"community": "社区", "street": "街道", "district": "区县"}

_RULE_FIELDS = ("id", "category", "area", "unit", "note", "illustrative")
_DIVISION_CODE = re.compile(r"^[0-9]+$")
_MAJOR = re.compile(r"^[CES][0-9]{2}$")
_CATEGORY_FORMS = '"E0101" (a 小类), "E01" (a 大类), "E" (a kind letter: C, E, S) or "*"'


@dataclass(frozen=True)
class Area:
    """Where a case is: its grid and the divisions above it ("" when unknown)."""

    grid: str
    community: str
    street: str
    district: str


@dataclass(frozen=True)
class Route:
    """A routing decision: the unit that takes the case, the rule that decided and why."""

    unit: str  # a department code, a division code, or GRID (the grid's own staff)
    rule: str  # "rule:<id>", "catalogue:<category code>" or "fallback:<level>"
    reason: str
    fallback: bool  # 属地兜底: nothing matched and the locality took the case


@dataclass(frozen=True)
class RoutingRule:
    """One [[rule]] of a routing file: cases of `category` in `area` go to `unit`."""

    id: str
    category: str
    area: str
    unit: str
    note: str = ""
    illustrative: bool = False

    def category_rank(self, category: Category) -> int | None:
        """How specifically the rule names the category (小类 3, 大类 2, kind 1, any 0), None when it does not."""
        selector = self.category
        if selector == ANY:
            return 0
        if len(selector) == 1:
            return 1 if category.code[0] == selector else None
        if len(selector) == 3:
            return 2 if category.code[:3] == selector else None
        return 3 if category.code == selector else None

    def area_rank(self, area: Area) -> int | None:
        """How specifically the rule names the area (grid 4 … district 1, any 0), None when it does not."""
        if self.area == ANY:
            return 0
        for rank, code in zip((4, 3, 2, 1), (area.grid, area.community, area.street, area.district), strict=True):
            if code == self.area:
                return rank
        return None


@dataclass(frozen=True)
class RoutingTable:
    """Routing rules (category × area → unit) over the catalogue's default departments."""

    rules: tuple[RoutingRule, ...]

    @classmethod
    def load(cls, catalogue: Catalogue, path: Path | None = None) -> RoutingTable:
        """Read and validate a routing file (default: the packaged one) against the catalogue."""
        if path is None:
            resource = importlib.resources.files("engine") / "data" / "routing.toml"
            return _parse(resource.read_text(encoding="utf-8"), str(resource), catalogue)
        return _parse(path.read_text(encoding="utf-8"), str(path), catalogue)

    def route(self, category: Category, area: Area, *, exclude: frozenset[str] = frozenset()) -> Route:
        """The unit for a case: the most specific rule, else the catalogue's department, else the locality.

        ``exclude`` holds the units that returned the case (退单); they are passed over for the next best.
        """
        skipped: list[str] = []
        for route in self._candidates(category, area):
            if route.unit in exclude:
                skipped.append(f"{route.unit}（已退单）")
            elif route.unit == GRID and not area.grid:
                skipped.append(f"{GRID}（位置不在任何网格）")
            else:
                return _with_skips(route, skipped)
        for level, code in zip(AREA_LEVELS[1:], (area.community, area.street, area.district), strict=True):
            if code and code not in exclude:
                reason = f"{category.code} {category.name}：无可派单位，属地兜底由{_LEVEL_NAMES[level]} {code} 承办"
                return _with_skips(Route(code, f"fallback:{level}", reason, True), skipped)
        tried = ", ".join(skipped) or "none"
        raise InvalidCommand(
            "area",
            f"no unit is left to take {category.code}: every candidate returned the case or is unknown ({tried})",
            "an area whose community, street or district has not returned the case",
        )

    def _candidates(self, category: Category, area: Area) -> Iterator[Route]:
        ranked: list[tuple[int, int, int, RoutingRule]] = []
        for index, rule in enumerate(self.rules):
            area_rank, category_rank = rule.area_rank(area), rule.category_rank(category)
            if area_rank is not None and category_rank is not None:
                ranked.append((-area_rank, -category_rank, index, rule))
        for *_, rule in sorted(ranked, key=lambda r: r[:3]):
            reason = f"{category.code} {category.name}：规则 {rule.id}（{rule.category} × {rule.area}）派 {rule.unit}"
            yield Route(rule.unit, f"rule:{rule.id}", f"{reason}；{rule.note}" if rule.note else reason, False)
        reason = f"{category.code} {category.name}：无规则，按目录默认派 {category.department}"
        yield Route(category.department, f"catalogue:{category.code}", reason, False)


def _with_skips(route: Route, skipped: list[str]) -> Route:
    if not skipped:
        return route
    return Route(route.unit, route.rule, f"{route.reason}；跳过 {', '.join(skipped)}", route.fallback)


def _parse(text: str, source: str, catalogue: Catalogue) -> RoutingTable:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{source}: not valid TOML: {exc}") from exc
    unknown = set(data) - {"rule"}
    if unknown:
        raise ValueError(f"{source}: unknown top-level key(s) {sorted(unknown)}; allowed: ['rule'] ([[rule]] tables)")
    tables = data.get("rule", [])
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise ValueError(f"{source}: 'rule' must be an array of tables ([[rule]])")
    rules: list[RoutingRule] = []
    for index, entry in enumerate(tables):
        rule = _rule(entry, index + 1, f"{source}: [[rule]] #{index + 1}", catalogue)
        if any(r.id == rule.id for r in rules):
            raise ValueError(f"{source}: [[rule]] #{index + 1}: duplicate id {rule.id!r}; ids must be unique")
        rules.append(rule)
    return RoutingTable(tuple(rules))


def _rule(entry: Mapping[str, Any], position: int, where: str, catalogue: Catalogue) -> RoutingRule:
    unknown = set(entry) - set(_RULE_FIELDS)
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {sorted(unknown)}; allowed: {list(_RULE_FIELDS)}")
    fields: dict[str, str] = {}
    for name in ("category", "area", "unit"):
        value = entry.get(name)
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"{where}: field {name!r} must be a non-empty string, got {value!r}")
        fields[name] = value
    rule_id, note = entry.get("id", str(position)), entry.get("note", "")
    if not isinstance(rule_id, str) or not re.fullmatch(r"[A-Za-z0-9_.-]+", rule_id):
        raise ValueError(f"{where}: id must be letters, digits, '_', '.' or '-', got {rule_id!r}")
    if not isinstance(note, str):
        raise ValueError(f"{where}: note must be a string, got {note!r}")
    illustrative = entry.get("illustrative", False)
    if not isinstance(illustrative, bool):
        raise ValueError(f"{where}: illustrative must be true or false, got {illustrative!r}")
    _check_category(fields["category"], where, catalogue)
    if fields["area"] != ANY and not _DIVISION_CODE.match(fields["area"]):
        raise ValueError(
            f"{where}: area {fields['area']!r} must be a grid, community, street or district code (digits) or '*'"
        )
    _check_unit(fields["unit"], where, catalogue)
    return RoutingRule(rule_id, fields["category"], fields["area"], fields["unit"], note, illustrative)


def _check_category(selector: str, where: str, catalogue: Catalogue) -> None:
    if selector == ANY or selector in KINDS.values():
        return
    if _MAJOR.match(selector):
        majors = sorted({code[:3] for code in catalogue.categories})
        if selector not in majors:
            raise ValueError(
                f"{where}: no category of the catalogue is in 大类 {selector!r}; known: {', '.join(majors)}"
            )
        return
    if selector not in catalogue.categories:
        raise ValueError(
            f"{where}: category {selector!r} is not in the catalogue; a category selector is {_CATEGORY_FORMS}"
        )


def _check_unit(unit: str, where: str, catalogue: Catalogue) -> None:
    # Division codes live in the event store, not in a file, so any digit string is accepted here.
    if unit == GRID or catalogue.is_unit(unit) or _DIVISION_CODE.match(unit):
        return
    allowed = ", ".join([GRID, *sorted(catalogue.departments)])
    raise ValueError(f"{where}: unknown unit {unit!r}; allowed: {allowed}, or a division code (digits)")


class GridLocator:
    """Which grid a reported point lies in (定位到网格): point-in-polygon over the current grid boundaries."""

    def __init__(self) -> None:
        self._shapes: dict[str, Any] = {}
        self._index: tuple[STRtree, tuple[str, ...]] | None = None  # rebuilt lazily after a change

    def draw(self, code: str, boundary: str) -> None:
        """A new grid with its boundary (GeoJSON Polygon or MultiPolygon text)."""
        if code in self._shapes:
            raise InvalidCommand("code", f"grid {code} is already drawn", "redraw to change its boundary")
        self._shapes[code] = _geometry(boundary)
        self._index = None

    def redraw(self, code: str, boundary: str) -> None:
        """重新划分: the grid's new boundary replaces the old one."""
        self._require(code)
        self._shapes[code] = _geometry(boundary)
        self._index = None

    def retire(self, code: str) -> None:
        """The grid no longer takes new locations."""
        self._require(code)
        del self._shapes[code]
        self._index = None

    def locate(self, lon: float, lat: float) -> str | None:
        """The grid containing the point (its boundary counts as inside); of overlapping grids the smallest."""
        check_location(lon, lat)
        if not self._shapes:
            return None
        tree, codes = self._tree()
        hits = tree.query(Point(lon, lat), predicate="intersects")
        if len(hits) == 0:
            return None
        smallest: tuple[float, str] = min((self._shapes[codes[int(i)]].area, codes[int(i)]) for i in hits)
        return smallest[1]

    def nearest(self, lon: float, lat: float) -> str | None:
        """The grid containing the point, else the closest one (属地兜底 outside every grid); None with no grids.

        Distance is planar in degrees: good enough to pick a neighbouring grid, not to measure anything.
        """
        inside = self.locate(lon, lat)
        if inside is not None or not self._shapes:
            return inside
        tree, codes = self._tree()
        return min(codes[int(i)] for i in tree.query_nearest(Point(lon, lat), all_matches=True))

    def _require(self, code: str) -> None:
        if code not in self._shapes:
            raise UnknownReference("grid", code, sorted(self._shapes))

    def _tree(self) -> tuple[STRtree, tuple[str, ...]]:
        if self._index is None:
            codes = tuple(self._shapes)
            self._index = (STRtree([self._shapes[c] for c in codes]), codes)
        return self._index


def _geometry(boundary: str) -> Any:
    check_boundary(boundary)
    geometry = shape(json.loads(boundary))
    # A boundary already in the event log cannot be refused on replay; a self-touching ring is repaired instead.
    return geometry if geometry.is_valid else shapely.make_valid(geometry)
