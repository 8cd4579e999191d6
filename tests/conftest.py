"""What every test shares: logging starts from structlog's defaults, whatever an earlier test configured."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import NoReturn

import pytest
import structlog


@pytest.fixture(autouse=True)
def default_logging() -> Iterator[None]:
    """A CLI run in-process or a benchmark configures logging for the process (a level, a renderer); the next
    test would inherit it, and ``structlog.testing.capture_logs`` keeps the configured level filter, so a
    test capturing info events after one that configured 'warning' would see none."""
    yield
    structlog.reset_defaults()


def unavailable(reason: str) -> NoReturn:
    """A test that needs a real component (Kafka, kcat, the browser) and cannot have it: under CI it fails;
    elsewhere it is skipped with the reason."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)
