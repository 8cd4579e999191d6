"""What every test shares: logging starts from structlog's defaults, whatever an earlier test configured."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import structlog


@pytest.fixture(autouse=True)
def default_logging() -> Iterator[None]:
    """A CLI run in-process or a benchmark configures logging for the process (a level, a renderer); the next
    test would inherit it, and ``structlog.testing.capture_logs`` keeps the configured level filter, so a
    test capturing info events after one that configured 'warning' would see none."""
    yield
    structlog.reset_defaults()
