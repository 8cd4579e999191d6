"""Report charts (报表图表): KPI rows drawn as trend lines, ranking bars and overdue-by-grid bars, in PNG and SVG."""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import cache
from typing import TYPE_CHECKING, Any

import matplotlib
from matplotlib import font_manager
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

if TYPE_CHECKING:
    from matplotlib.typing import RcKeyType

    from projections.kpi_queries import KpiRow

FORMATS = ("png", "svg")
"""The file formats every chart is written in."""
SIZE = (10.0, 5.6)
DPI = 100
"""Fixed figure size (inches) and resolution: the same rows give the same pixels."""
GRADE_COLOURS: Mapping[str, str] = {
    "A": "#1a9850",
    "B": "#91cf60",
    "C": "#e6c200",
    "D": "#fc8d59",
    "E": "#d73027",
}
"""A–E from green to red (ColorBrewer RdYlGn); a row without a grade is grey."""
NO_GRADE = "#9e9e9e"
CJK_FAMILIES = (
    "Noto Sans CJK SC",
    "Source Han Sans SC",
    "WenQuanYi Micro Hei",
    "WenQuanYi Zen Hei",
    "Sarasa Gothic SC",
    "Microsoft YaHei",
    "SimHei",
    "PingFang SC",
)
"""Fonts with simplified Chinese glyphs, in order of preference (e.g. Debian's fonts-noto-cjk)."""
SVG_SALT = "gridloop"
"""svg.hashsalt: the ids of clip paths in an SVG come from it, not from a random UUID."""

# matplotlib is not thread-safe, and the SVG salt is a global setting: one chart is rendered at a time.
_RENDERING = threading.Lock()


@cache
def cjk_family() -> str | None:
    """The installed font that can draw unit names (中文), or None: then charts label units by code alone."""
    installed = {font.name for font in font_manager.fontManager.ttflist}
    return next((family for family in CJK_FAMILIES if family in installed), None)


def _style() -> dict[RcKeyType, Any]:
    family = cjk_family()
    return {
        "font.family": ["DejaVu Sans", family] if family else ["DejaVu Sans"],
        "svg.hashsalt": SVG_SALT,
        "svg.fonttype": "path",
        "axes.spines.top": False,
        "axes.spines.right": False,
    }


@contextmanager
def _styled() -> Iterator[None]:
    with _RENDERING, matplotlib.rc_context(_style()):
        yield


def said(english: str, chinese: str) -> str:
    """A title or label in both languages when a Chinese font is installed, in English otherwise."""
    return f"{chinese} {english}" if cjk_family() else english


def unit_label(row: KpiRow) -> str:
    """A unit as the axis names it: its code, and its name when a Chinese font can draw it."""
    return f"{row.code} {row.name}" if cjk_family() and row.name and row.name != row.code else row.code


def percent(rate: float | None) -> float | None:
    """A rate (a fraction) as a percentage, for the axis."""
    return None if rate is None else rate * 100.0


def _figure() -> Figure:
    figure = Figure(figsize=SIZE, dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def ranking_figure(rows: Sequence[KpiRow], title: str) -> Figure:
    """Score by unit, best at the top, each bar coloured by its grade (A–E)."""
    with _styled():
        figure = _figure()
        axes = figure.add_subplot()
        shown = list(rows)[::-1]  # barh draws bottom-up: the best unit goes last, at the top
        scores = [row.score or 0.0 for row in shown]
        colours = [GRADE_COLOURS.get(row.grade, NO_GRADE) for row in shown]
        bars = axes.barh([unit_label(row) for row in shown], scores, color=colours)
        axes.bar_label(bars, labels=[_score_text(row) for row in shown], padding=3, fontsize=8)
        axes.set_xlim(0, 105)
        axes.set_xlabel(said("composite score", "综合得分"))
        axes.set_title(title)
        axes.tick_params(axis="y", labelsize=8)
        for grade, colour in GRADE_COLOURS.items():
            axes.bar(0, 0, color=colour, label=grade)  # legend entries only: zero-sized
        axes.legend(title=said("grade", "等级"), loc="lower right", fontsize=8)
    return figure


def _score_text(row: KpiRow) -> str:
    return "—" if row.score is None else f"{row.score:.1f} {row.grade}"


def trend_figure(
    periods: Sequence[str],
    series: Mapping[str, Sequence[KpiRow | None]],
    rate: str,
    rate_label: tuple[str, str],
    title: str,
) -> Figure:
    """Two panels over ``periods``: ``rate`` (in %) and the composite score, one line per unit; a unit's row is
    None in a period it had no activity in (a gap in its line)."""
    with _styled():
        figure = _figure()
        rate_axes, score_axes = figure.subplots(2, 1, sharex=True)
        where = range(len(periods))
        for code, rows in series.items():
            named = next((row for row in rows if row is not None), None)
            label = unit_label(named) if named is not None else code
            rates = [_nan(percent(row.rates.get(rate))) if row else float("nan") for row in rows]
            scores = [_nan(row.score) if row else float("nan") for row in rows]
            rate_axes.plot(where, rates, marker="o", label=label)
            score_axes.plot(where, scores, marker="o", label=label)
        rate_axes.set_ylabel(said(*rate_label) + " %")
        score_axes.set_ylabel(said("score", "得分"))
        for axes in (rate_axes, score_axes):
            axes.set_ylim(0, 105)
            axes.set_xlim(-0.5, len(periods) - 0.5)
        score_axes.set_xticks(list(where), list(periods), rotation=30, fontsize=8)
        rate_axes.set_title(title)
        if series:
            rate_axes.legend(fontsize=8, loc="lower left", ncols=min(len(series), 3))
    return figure


def _nan(value: float | None) -> float:
    """Missing values as NaN: matplotlib leaves a gap in the line there."""
    return float("nan") if value is None else value


def overdue_figure(rows: Sequence[KpiRow], count: str, title: str) -> Figure:
    """Bars of the grids with the most overdue cases (``rows`` already chosen and ordered, most first)."""
    with _styled():
        figure = _figure()
        axes = figure.add_subplot()
        labels = [unit_label(row) for row in rows]
        values = [row.counts.get(count, 0) for row in rows]
        bars = axes.bar(labels, values, color="#d73027")
        axes.bar_label(bars, padding=2, fontsize=8)
        axes.set_ylabel(said("overdue cases", "超期案件"))
        axes.tick_params(axis="x", labelrotation=45, labelsize=8)
        axes.set_title(title)
        if not rows:
            axes.text(0.5, 0.5, "no overdue cases", ha="center", va="center", transform=axes.transAxes)
    return figure


def render(figure: Figure, fmt: str) -> bytes:
    """The figure as PNG or SVG bytes; SVG without its date and with fixed ids, so equal rows give equal bytes."""
    if fmt not in FORMATS:
        raise ValueError(f"chart format {fmt!r}; allowed: {', '.join(FORMATS)}")
    metadata = {"Date": None} if fmt == "svg" else {"Software": None}
    buffer = io.BytesIO()
    with _styled():
        figure.savefig(buffer, format=fmt, dpi=DPI, metadata=metadata)
    return buffer.getvalue()
