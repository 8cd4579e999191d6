"""Deterministic random streams: one seed, named sub-streams, and the few distributions the simulator draws."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from datetime import timedelta
from typing import TypeVar

T = TypeVar("T")


def stream(seed: int, *labels: object) -> random.Random:
    """A sub-stream named by ``labels``: the same seed and labels always give the same draws.

    String seeds are hashed with SHA-512 by ``random``, so the stream does not depend on
    PYTHONHASHSEED, the platform or the order in which other streams were used.
    """
    return random.Random(":".join(str(part) for part in (seed, *labels)))


def chance(rng: random.Random, probability: float) -> bool:
    """True with ``probability``."""
    return rng.random() < probability


def minutes(rng: random.Random, low: float, high: float) -> timedelta:
    """A uniform delay between ``low`` and ``high`` minutes, in whole seconds."""
    return timedelta(seconds=rng.randint(round(low * 60), round(high * 60)))


def hours(rng: random.Random, low: float, high: float) -> timedelta:
    """A uniform delay between ``low`` and ``high`` hours, in whole seconds."""
    return minutes(rng, low * 60, high * 60)


def poisson(rng: random.Random, mean: float) -> int:
    """A Poisson count (Knuth's method; a rounded normal for large means, where it is close enough)."""
    if mean <= 0:
        return 0
    if mean > 60:
        return max(0, round(rng.gauss(mean, math.sqrt(mean))))
    limit, count, product = math.exp(-mean), 0, rng.random()
    while product > limit:
        count += 1
        product *= rng.random()
    return count


def count_at_rate(rng: random.Random, rate: float) -> int:
    """The whole part of ``rate``, plus one more with the fractional part's probability."""
    whole = math.floor(rate)
    return whole + (1 if chance(rng, rate - whole) else 0)


def weighted(rng: random.Random, choices: Sequence[tuple[T, float]]) -> T:
    """One of ``choices`` (value, weight)."""
    values = [value for value, _ in choices]
    weights = [weight for _, weight in choices]
    return rng.choices(values, weights=weights, k=1)[0]
