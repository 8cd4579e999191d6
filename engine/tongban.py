"""Service items handled anywhere in the county (全县通办): who accepts, who processes, who completes."""

from __future__ import annotations

import importlib.resources
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from engine.errors import InvalidCommand, UnknownReference
from engine.routing import Area

PROCESSING_LEVELS = ("street", "community")
"""Where an item is processed: the street/town (街道/乡镇) or the community/village (社区/村)."""

_CODE = re.compile(r"^TB[0-9]{2}$")
_ITEM_FIELDS = ("code", "name", "name_en", "processing_level", "time_limit_days", "illustrative")


@dataclass(frozen=True)
class ServiceItem:
    """A government service item (政务服务事项) open to 全县通办."""

    code: str
    name: str
    name_en: str
    processing_level: str  # one of PROCESSING_LEVELS
    time_limit_days: int  # working days
    illustrative: bool  # True when the item is not named in the sources


@dataclass(frozen=True)
class ServiceItems:
    """The 全县通办 service items, looked up by code."""

    items: Mapping[str, ServiceItem]

    @classmethod
    def load(cls, path: Path | None = None) -> ServiceItems:
        """Read and validate a service-item file (default: the packaged one)."""
        if path is None:
            resource = importlib.resources.files("engine") / "data" / "tongban.toml"
            return _parse(resource.read_text(encoding="utf-8"), str(resource))
        return _parse(path.read_text(encoding="utf-8"), str(path))

    def item(self, code: str) -> ServiceItem:
        """The item with this code; UnknownReference lists the known codes."""
        try:
            return self.items[code]
        except KeyError:
            raise UnknownReference("service item", code, allowed=sorted(self.items)) from None


@dataclass(frozen=True)
class TongbanUnits:
    """The three units of a 全县通办 request: 受理 (accepting), 办理 (processing), 办结 (completing)."""

    accepting: str
    processing: str
    completing: str


def tongban_units(item: ServiceItem, *, residence: Area, registered: Area) -> TongbanUnits:
    """居住地受理、户籍地办理、受理地办结: accepted where the resident lives, processed where registered."""
    accepting = _unit_at(item, residence, "residence", "lives")
    processing = _unit_at(item, registered, "registered", "is registered (户籍地)")
    return TongbanUnits(accepting=accepting, processing=processing, completing=accepting)


def _unit_at(item: ServiceItem, area: Area, field: str, where: str) -> str:
    code = area.street if item.processing_level == "street" else area.community
    if not code:
        raise InvalidCommand(
            field,
            f"has no {item.processing_level} code, needed by {item.code} {item.name} (processed at the "
            f"{item.processing_level} level)",
            f"the {item.processing_level} where the resident {where}",
        )
    return code


def _parse(text: str, source: str) -> ServiceItems:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{source}: not valid TOML: {exc}") from exc
    unknown = set(data) - {"item"}
    if unknown:
        raise ValueError(f"{source}: unknown top-level key(s) {sorted(unknown)}; allowed: ['item'] ([[item]] tables)")
    tables = data.get("item", [])
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise ValueError(f"{source}: 'item' must be an array of tables ([[item]])")
    items: dict[str, ServiceItem] = {}
    for index, entry in enumerate(tables):
        where = f"{source}: [[item]] #{index + 1} ({entry.get('code', '?')!r})"
        item = _item(entry, where)
        if item.code in items:
            raise ValueError(f"{where}: duplicate item code; codes must be unique")
        items[item.code] = item
    return ServiceItems(MappingProxyType(items))


def _item(entry: Mapping[str, Any], where: str) -> ServiceItem:
    unknown = set(entry) - set(_ITEM_FIELDS)
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {sorted(unknown)}; allowed: {list(_ITEM_FIELDS)}")
    fields: dict[str, str] = {}
    for name in ("code", "name", "name_en", "processing_level"):
        value = entry.get(name)
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"{where}: field {name!r} must be a non-empty string, got {value!r}")
        fields[name] = value
    if not _CODE.match(fields["code"]):
        raise ValueError(f"{where}: code must be 'TB' + 2 digits, e.g. TB01")
    if fields["processing_level"] not in PROCESSING_LEVELS:
        raise ValueError(
            f"{where}: unknown processing_level {fields['processing_level']!r}; allowed: {', '.join(PROCESSING_LEVELS)}"
        )
    days = entry.get("time_limit_days")
    if isinstance(days, bool) or not isinstance(days, int) or days <= 0:
        raise ValueError(f"{where}: time_limit_days must be a positive whole number of working days, got {days!r}")
    illustrative = entry.get("illustrative", False)
    if not isinstance(illustrative, bool):
        raise ValueError(f"{where}: illustrative must be true or false, got {illustrative!r}")
    return ServiceItem(time_limit_days=days, illustrative=illustrative, **fields)
