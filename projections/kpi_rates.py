"""The KPI formulas (考核公式): each rate from named counts, the composite score and its A–E grade."""

from __future__ import annotations

from collections.abc import Mapping

RATE_NAMES: dict[str, str] = {
    "closure_rate": "结案率",
    "on_time_closure_rate": "按期结案率",
    "handling_rate": "处置率",
    "on_time_handling_rate": "按期处置率",
    "rework_rate": "返工率",
    "extension_rate": "延期率",
    "return_rate": "退单率",
    "timely_accept_rate": "及时签收率",
    "response_rate": "响应率",
    "resolution_rate": "解决率",
    "satisfaction_rate": "满意率",
    "callback_score": "三率综合",
    "valid_report_rate": "有效上报率",
    "on_time_verify_rate": "按时核实率",
    "on_time_dispatch_rate": "按时派遣率",
    "accurate_dispatch_rate": "准确派遣率",
}
"""Every rate, by key, with its Chinese label, in display order."""

RATIOS: dict[str, tuple[str, str]] = {
    "closure_rate": ("closed", "due_to_close"),
    "on_time_closure_rate": ("closed_on_time", "due_to_close"),
    "handling_rate": ("handled", "due_to_handle"),
    "on_time_handling_rate": ("handled_on_time", "due_to_handle"),
    "rework_rate": ("reworked", "handled"),
    "extension_rate": ("extended", "due_to_handle"),
    "return_rate": ("returned", "dispatched"),
    "timely_accept_rate": ("accepted_on_time", "dispatched"),
    "response_rate": ("contacted", "callbacks"),
    "resolution_rate": ("solved", "callbacks"),
    "valid_report_rate": ("patrol_reports_valid", "patrol_reports_decided"),
    "on_time_verify_rate": ("verified_on_time", "verified"),
    "on_time_dispatch_rate": ("dispatched_on_time", "first_dispatched"),
    "accurate_dispatch_rate": ("dispatched_accurately", "first_dispatched"),
}
"""The rates that are one count over another: key -> (numerator, denominator)."""

BASICALLY_SATISFIED = 0.9
"""满意率 counts a "basically satisfied" (基本满意) call-back as 0.9 of a satisfied one (12345 practice)."""

CALLBACK_WEIGHTS: dict[str, float] = {"response_rate": 0.1, "resolution_rate": 0.5, "satisfaction_rate": 0.4}
"""三率综合: 响应率 10 %, 解决率 50 %, 满意率 40 % (Beijing 接诉即办)."""

SCORE_WEIGHTS: dict[str, float] = {
    "on_time_closure_rate": 25,
    "closure_rate": 15,
    "on_time_handling_rate": 15,
    "handling_rate": 5,
    "rework_rate": 10,
    "timely_accept_rate": 5,
    "return_rate": 5,
    "callback_score": 20,
}
"""The composite score's weights (sum 100); rework and return rates count as (1 - rate). See docs/kpis.md."""

INVERTED = frozenset({"rework_rate", "return_rate"})
"""Rates where lower is better: they enter the score as 1 - rate."""

GRADES: tuple[tuple[float, str], ...] = ((90, "A"), (75, "B"), (60, "C"), (40, "D"), (0, "E"))
"""Grade bands of the composite score: A >= 90, B >= 75, C >= 60, D >= 40, E below (数字城管 practice)."""


def ratio(numerator: int, denominator: int) -> float | None:
    """numerator / denominator, or None when there is nothing to divide by."""
    return numerator / denominator if denominator else None


def rates(counts: Mapping[str, int]) -> dict[str, float | None]:
    """Every rate of RATE_NAMES from the counts (None where its denominator is 0), in display order."""
    found: dict[str, float | None] = {key: ratio(counts[n], counts[d]) for key, (n, d) in RATIOS.items()}
    callbacks = counts["callbacks"]
    satisfied = counts["satisfied"] + BASICALLY_SATISFIED * counts["basically_satisfied"]
    found["satisfaction_rate"] = satisfied / callbacks if callbacks else None
    found["callback_score"] = (
        sum(weight * (found[key] or 0.0) for key, weight in CALLBACK_WEIGHTS.items()) if callbacks else None
    )
    return {key: found[key] for key in RATE_NAMES}


def score(found: Mapping[str, float | None]) -> float | None:
    """The composite score, 0–100: the weighted mean of the scored rates that are defined (None if none is).

    A rate with no denominator (a unit that had no call-backs, say) is left out and the other weights
    are scaled up to 100, so a unit is not scored on work it never had.
    """
    total = weight_sum = 0.0
    for key, weight in SCORE_WEIGHTS.items():
        value = found[key]
        if value is None:
            continue
        total += weight * (1.0 - value if key in INVERTED else value)
        weight_sum += weight
    return round(100.0 * total / weight_sum, 2) if weight_sum else None


def grade(value: float | None) -> str:
    """The A–E grade of a score ('' for no score)."""
    if value is None:
        return ""
    return next(letter for floor, letter in GRADES if value >= floor)
