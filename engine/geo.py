"""Where things are: a reported location (WGS84 point) and a grid boundary (GeoJSON polygon), checked."""

from __future__ import annotations

import json
import math
from typing import Any

from engine.errors import InvalidCommand


def check_location(lon: float | None, lat: float | None) -> None:
    """A location is both coordinates in WGS84 degrees, or neither (a hotline call may have none)."""
    if (lon is None) != (lat is None):
        raise InvalidCommand("location", "has only one coordinate", "both lon and lat (WGS84), or neither")
    if lon is None or lat is None:
        return
    if not (math.isfinite(lon) and -180.0 <= lon <= 180.0):
        raise InvalidCommand("lon", f"{lon} is not a longitude", "-180 to 180 (WGS84 degrees)")
    if not (math.isfinite(lat) and -90.0 <= lat <= 90.0):
        raise InvalidCommand("lat", f"{lat} is not a latitude", "-90 to 90 (WGS84 degrees)")


_EXPECTED = 'a GeoJSON Polygon or MultiPolygon geometry, e.g. {"type": "Polygon", "coordinates": [[[lon, lat], ...]]}'


def check_boundary(text: str) -> None:
    """A grid boundary is a GeoJSON Polygon or MultiPolygon whose rings are closed and in range."""
    try:
        geometry = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidCommand("boundary", f"is not JSON ({exc.msg} at {exc.pos})", _EXPECTED) from None
    if not isinstance(geometry, dict) or geometry.get("type") not in ("Polygon", "MultiPolygon"):
        raise InvalidCommand("boundary", "is not a Polygon or MultiPolygon geometry", _EXPECTED)
    coordinates = geometry.get("coordinates")
    polygons = [coordinates] if geometry["type"] == "Polygon" else coordinates
    if not isinstance(polygons, list) or not polygons:
        raise InvalidCommand("boundary", "has no coordinates", _EXPECTED)
    for polygon in polygons:
        if not isinstance(polygon, list) or not polygon:
            raise InvalidCommand("boundary", "has a polygon without rings", _EXPECTED)
        for ring in polygon:
            _check_ring(ring)


def _check_ring(ring: Any) -> None:
    if not isinstance(ring, list) or len(ring) < 4:
        raise InvalidCommand("boundary", "has a ring of fewer than 4 positions", "closed rings of at least 4 positions")
    for position in ring:
        if not (isinstance(position, list) and len(position) >= 2 and all(_is_number(v) for v in position[:2])):
            raise InvalidCommand("boundary", f"has a position {position!r} that is not [lon, lat]", _EXPECTED)
        try:
            check_location(float(position[0]), float(position[1]))
        except InvalidCommand as exc:
            raise InvalidCommand("boundary", f"has a position out of range: {exc}", _EXPECTED) from None
    if ring[0][:2] != ring[-1][:2]:
        raise InvalidCommand("boundary", "has a ring that is not closed", "first position equal to the last")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
