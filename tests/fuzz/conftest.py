"""Hypothesis profiles for the fuzz tests: a small derandomized one for CI, a large one for ``make fuzz``.

The profile is chosen by ``HYPOTHESIS_PROFILE`` (``ci`` unless set) and applied to the fuzz tests only, through
``fuzz_settings``: loading it globally would change the budget of every other hypothesis test in the session.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, Phase, settings

PROFILES = ("ci", "fuzz")

settings.register_profile(
    "ci",
    # The same examples on every run (a CI failure is a failure on a laptop), few enough that all of tests/fuzz
    # stays well under a minute on two shared cores.
    max_examples=30,
    stateful_step_count=30,
    derandomize=True,
    database=None,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "fuzz",
    # Random, many and long: what `make fuzz` spends minutes on. Failures are kept in the example database
    # (.hypothesis/) and replayed first on the next run, and printed with a blob to reproduce them.
    max_examples=int(os.environ.get("GRIDLOOP_FUZZ_PROPERTY_EXAMPLES", "500")),
    stateful_step_count=60,
    derandomize=False,
    deadline=None,
    print_blob=True,
    phases=list(Phase),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def fuzz_settings(*, scale: float = 1.0) -> settings:
    """The chosen profile's settings, its example budget scaled by ``scale`` for a test whose examples cost more."""
    name = os.environ.get("HYPOTHESIS_PROFILE", "ci")
    if name not in PROFILES:
        raise ValueError(f"HYPOTHESIS_PROFILE={name!r} is not a fuzz profile; use one of {', '.join(PROFILES)}")
    chosen = settings.get_profile(name)
    return settings(chosen, max_examples=max(1, round(chosen.max_examples * scale)))
