"""The report's charts from hand-made KPI rows: written as PNG and SVG, readable, naming the units, byte-stable."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from matplotlib.colors import to_rgba
from matplotlib.lines import Line2D

from ops.report.charts import chart_files
from projections.kpi_queries import KpiRow, parse_period
from projections.reports import Report, ranking_rows
from projections.reports_charts import (
    GRADE_COLOURS,
    overdue_figure,
    ranking_figure,
    render,
    trend_figure,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
NOVEMBER = parse_period("2026-11")


def row(code: str, score: float | None, grade: str = "", on_time: float | None = 0.9, overdue: int = 0) -> KpiRow:
    return KpiRow(
        level="community",
        code=code,
        name=f"社区{code[-2:]}",
        period="2026-11",
        counts={"due_to_close": 10, "closed_on_time": 10 - overdue, "overdue": overdue},
        rates={"on_time_closure_rate": on_time},
        score=score,
        grade=grade,
    )


RANKED = [row("140827100003", 92.5, "A"), row("140827100001", 80.0, "B"), row("140827100002", 41.0, "D")]


def ys(line: Line2D) -> list[float]:
    return [float(y) for y in np.asarray(line.get_ydata(), dtype=float)]


def svg_text(data: bytes) -> str:
    """Every text an SVG holds, comments included: matplotlib draws text as glyph paths and says it in a comment."""
    parser = ET.XMLParser(target=ET.TreeBuilder(insert_comments=True))
    root = ET.fromstring(data, parser=parser)
    return " ".join(node.text or "" for node in root.iter())


def test_every_chart_is_written_as_png_and_svg_into_the_named_directory(tmp_path: Path) -> None:
    figures = {
        "ranking": ranking_figure(RANKED, "ranking"),
        "overdue": overdue_figure([row("140827100001002", None, overdue=4)], "overdue", "overdue"),
    }
    written = chart_files(figures, tmp_path / "new" / "dir", "community-2026-11")

    assert sorted(path.name for path in written) == [
        "community-2026-11-overdue.png", "community-2026-11-overdue.svg",
        "community-2026-11-ranking.png", "community-2026-11-ranking.svg",
    ]  # fmt: skip
    for path in written:
        data = path.read_bytes()
        if path.suffix == ".png":
            assert data.startswith(PNG_MAGIC)
        else:
            assert ET.fromstring(data).tag == "{http://www.w3.org/2000/svg}svg"
    assert not list(tmp_path.rglob("*.partial"))


def test_the_ranking_names_every_unit_with_its_score_and_grade() -> None:
    text = svg_text(render(ranking_figure(RANKED, "community ranking 2026-11"), "svg"))

    for ranked in RANKED:
        assert ranked.code in text
        assert f"{ranked.score:.1f} {ranked.grade}" in text
    assert "community ranking 2026-11" in text


def test_the_ranking_puts_the_best_unit_on_top_and_colours_bars_by_grade() -> None:
    figure = ranking_figure(RANKED, "ranking")
    axes = figure.axes[0]
    # A unit is labelled "code name" where a Chinese font is installed, by its code alone elsewhere.
    labels = [tick.get_text().split(" ")[0] for tick in axes.get_yticklabels()]
    assert labels == [r.code for r in reversed(RANKED)]  # barh draws bottom-up: the best last, at the top
    bars = axes.containers[0]
    colours = [bar.get_facecolor() for bar in bars]
    assert colours == [to_rgba(GRADE_COLOURS[r.grade]) for r in reversed(RANKED)]


def test_the_same_rows_give_the_same_svg_bytes_without_a_date() -> None:
    first = render(ranking_figure(RANKED, "ranking"), "svg")
    second = render(ranking_figure(RANKED, "ranking"), "svg")

    assert first == second
    assert b"<dc:date>" not in first
    assert render(ranking_figure(RANKED[:2], "ranking"), "svg") != first


def test_the_trend_draws_one_line_per_unit_over_every_period_with_gaps_for_idle_ones() -> None:
    periods = ["2026-09", "2026-10", "2026-11"]
    series = {
        "140827100003": [None, row("140827100003", 70.0, on_time=0.5), row("140827100003", 92.5, on_time=0.95)],
        "140827100001": [row("140827100001", 60.0), None, row("140827100001", 80.0, on_time=None)],
    }
    figure = trend_figure(periods, series, "on_time_closure_rate", ("on-time closure rate", "按期结案率"), "trend")
    rate_axes, score_axes = figure.axes

    assert [tick.get_text() for tick in score_axes.get_xticklabels()] == periods
    lines = {str(line.get_label()).split(" ")[0]: ys(line) for line in rate_axes.get_lines()}
    assert lines["140827100003"][1:] == [50.0, 95.0]
    assert lines["140827100001"][0] == pytest.approx(90.0)
    assert all(math.isnan(value) for value in (lines["140827100003"][0], lines["140827100001"][2]))  # gaps
    assert [ys(line)[2] for line in score_axes.get_lines()] == [92.5, 80.0]
    text = svg_text(render(figure, "svg"))
    assert all(period in text for period in periods)


def test_the_overdue_chart_shows_the_grids_it_is_given_with_their_counts() -> None:
    grids = [row("140827100001002", None, overdue=7), row("140827100002001", None, overdue=3)]
    figure = overdue_figure(grids, "overdue", "overdue by grid")
    heights = [bar.get_height() for bar in figure.axes[0].containers[0]]

    assert heights == [7, 3]
    text = svg_text(render(figure, "svg"))
    assert "140827100001002" in text and "140827100002001" in text


def test_an_unknown_chart_format_is_refused_naming_the_allowed_ones() -> None:
    with pytest.raises(ValueError, match="allowed: png, svg"):
        render(ranking_figure(RANKED, "ranking"), "pdf")


def test_ranks_are_competition_ranks_by_score_and_unscored_units_have_none() -> None:
    rows = [row("a", 90.0), row("b", 80.0), row("c", 80.0), row("d", 70.0), row("e", None)]
    made = Report("community", NOVEMBER, None, rows)

    assert made.ranks == [1, 2, 2, 4, None]


def test_a_long_ranking_shows_the_best_and_the_worst_units() -> None:
    rows = [row(f"{n:03d}", 100.0 - n / 10) for n in range(100)]
    shown = ranking_rows(rows)

    assert [r.code for r in shown] == [f"{n:03d}" for n in (*range(20), *range(80, 100))]
    assert ranking_rows(rows[:40]) == rows[:40]
