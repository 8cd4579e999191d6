"""The 四度 formulas: each degree 0–100 from its inputs, with its weights; the overall score and grade."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from projections.kpi_rates import BASICALLY_SATISFIED, grade, ratio

DEGREES: dict[str, str] = {
    "familiarity": "熟悉度",
    "trust": "信任度",
    "delivery": "落实度",
    "satisfaction": "满意度",
}
"""The four degrees (Wuchang's 四度), in the article's order, with their Chinese names."""

WEIGHTS: dict[str, dict[str, float]] = {
    # 敲得开门、认得清人: out in the grid on working days, and finding problems before residents must report them.
    "familiarity": {"patrol_day_rate": 0.5, "proactive_rate": 0.5},
    # 放得了心: residents bring their matters to the grid rather than the 12345 hotline, and what was fixed stays fixed.
    "trust": {"direct_share": 0.6, "fixed_share": 0.4},
    # 办得了事: handled by the deadline, passing verification first time, not sent back.
    "delivery": {"on_time_rate": 0.5, "first_pass_rate": 0.3, "kept_rate": 0.2},
    # 满意度: 满意率 of the call-backs of the cases the worker handled.
    "satisfaction": {"satisfaction_rate": 1.0},
}
"""Each degree's parts and their weights (each degree's weights sum to 1)."""

DEGREE_WEIGHTS: dict[str, float] = dict.fromkeys(DEGREES, 0.25)
"""The overall score's weights: the article gives none, so the four count alike."""

INPUTS = (
    "workdays", "patrol_days", "patrols", "checkpoints",
    "patrol_cases", "resident_cases", "app_cases", "hotline_cases",
    "dispatched", "returned", "handled", "handled_on_time", "verified", "verified_passed",
    "called_back", "fixed", "satisfied", "basically_satisfied",
)  # fmt: skip
"""The counts a worker's degrees are computed from (see docs/evaluation.md for where each comes from)."""


@dataclass(frozen=True)
class Degree:
    """One degree of one worker: its score 0–100 (None with no input), its parts as rates, their inputs."""

    score: float | None
    parts: dict[str, float | None]
    inputs: dict[str, int]


def degrees(counts: Mapping[str, int]) -> dict[str, Degree]:
    """The four degrees from a worker's counts (every key of INPUTS)."""
    c = counts
    resident_sourced = c["resident_cases"] + c["app_cases"] + c["hotline_cases"]
    parts: dict[str, dict[str, float | None]] = {
        "familiarity": {
            "patrol_day_rate": min(1.0, c["patrol_days"] / c["workdays"]) if c["workdays"] else None,
            "proactive_rate": ratio(c["patrol_cases"], c["patrol_cases"] + resident_sourced),
        },
        "trust": {
            "direct_share": ratio(c["resident_cases"] + c["app_cases"], resident_sourced),
            "fixed_share": ratio(c["fixed"], c["called_back"]),
        },
        "delivery": {
            "on_time_rate": ratio(c["handled_on_time"], c["handled"]),
            "first_pass_rate": ratio(c["verified_passed"], c["verified"]),
            "kept_rate": 1.0 - c["returned"] / c["dispatched"] if c["dispatched"] else None,
        },
        "satisfaction": {
            "satisfaction_rate": (
                (c["satisfied"] + BASICALLY_SATISFIED * c["basically_satisfied"]) / c["called_back"]
                if c["called_back"]
                else None
            ),
        },
    }
    used: dict[str, tuple[str, ...]] = {
        "familiarity": ("workdays", "patrol_days", "patrols", "checkpoints", "patrol_cases", "resident_cases",
                        "app_cases", "hotline_cases"),
        "trust": ("resident_cases", "app_cases", "hotline_cases", "called_back", "fixed"),
        "delivery": ("dispatched", "returned", "handled", "handled_on_time", "verified", "verified_passed"),
        "satisfaction": ("called_back", "satisfied", "basically_satisfied"),
    }  # fmt: skip
    return {
        name: Degree(weighted(parts[name], WEIGHTS[name]), parts[name], {k: c[k] for k in used[name]})
        for name in DEGREES
    }


def weighted(parts: Mapping[str, float | None], weights: Mapping[str, float]) -> float | None:
    """100 x the weighted mean of the parts that are defined (the others' weights left out), 2 decimals; None if none.

    A worker is not scored on what they had no occasion for: with no call-back, satisfaction is None
    and trust rests on the channel share alone.
    """
    total = weight_sum = 0.0
    for key, weight in weights.items():
        value = parts[key]
        if value is not None:
            total += weight * value
            weight_sum += weight
    return round(100.0 * total / weight_sum, 2) if weight_sum else None


def overall(found: Mapping[str, Degree]) -> tuple[float | None, str]:
    """The overall 四度 score (the degrees' weighted mean, undefined ones left out) and its A–E grade."""
    total = weight_sum = 0.0
    for name, weight in DEGREE_WEIGHTS.items():
        value = found[name].score
        if value is not None:
            total += weight * value
            weight_sum += weight
    value = round(total / weight_sum, 2) if weight_sum else None
    return value, grade(value)
