"""Synthetic grid boundaries: rectangles tiled around the district's centre (示意, not surveyed lines)."""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass

CELL_LON = 0.004
CELL_LAT = 0.003
"""Size of one synthetic grid in degrees: about 360 m x 330 m at these latitudes, a few hundred households."""


@dataclass(frozen=True)
class Box:
    """A grid's rectangle in WGS84 degrees."""

    west: float
    south: float
    east: float
    north: float

    def polygon(self) -> str:
        """The rectangle as GeoJSON Polygon geometry text (counter-clockwise outer ring, closed)."""
        ring = [
            [self.west, self.south],
            [self.east, self.south],
            [self.east, self.north],
            [self.west, self.north],
            [self.west, self.south],
        ]
        return json.dumps({"type": "Polygon", "coordinates": [ring]}, separators=(",", ":"))

    def point(self, rng: random.Random) -> tuple[float, float]:
        """A (lon, lat) strictly inside the rectangle, rounded to about 10 cm."""
        margin_lon = (self.east - self.west) * 0.05
        margin_lat = (self.north - self.south) * 0.05
        lon = rng.uniform(self.west + margin_lon, self.east - margin_lon)
        lat = rng.uniform(self.south + margin_lat, self.north - margin_lat)
        return round(lon, 6), round(lat, 6)


def tile(center: tuple[float, float], count: int) -> list[Box]:
    """``count`` rectangles in rows, west to east and north to south, centred on ``center`` (lon, lat)."""
    if count <= 0:
        return []
    columns = math.ceil(math.sqrt(count))
    rows = math.ceil(count / columns)
    west = center[0] - columns * CELL_LON / 2
    north = center[1] + rows * CELL_LAT / 2
    boxes = []
    for index in range(count):
        row, column = divmod(index, columns)
        boxes.append(
            Box(
                west=round(west + column * CELL_LON, 6),
                south=round(north - (row + 1) * CELL_LAT, 6),
                east=round(west + (column + 1) * CELL_LON, 6),
                north=round(north - row * CELL_LAT, 6),
            )
        )
    return boxes
