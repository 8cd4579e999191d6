"""Writing a report's charts (报表图表) to files: each chart as PNG and SVG, named by level, period and chart."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from matplotlib.figure import Figure

from projections.reports_charts import FORMATS, render


def chart_files(figures: Mapping[str, Figure], out: Path, stem: str) -> list[Path]:
    """Write every figure as ``<stem>-<name>.png`` and ``.svg`` into ``out`` (made if missing); the paths written.

    Each file is written beside its final name and moved into place, so a reader never sees half a chart.
    """
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for name, figure in figures.items():
        for fmt in FORMATS:
            path = out / f"{stem}-{name}.{fmt}"
            partial = path.with_suffix(path.suffix + ".partial")
            partial.write_bytes(render(figure, fmt))
            partial.replace(path)
            written.append(path)
    return written
