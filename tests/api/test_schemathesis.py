"""Requests generated from the OpenAPI document, valid and malformed: whatever they hold, the server never fails."""

from __future__ import annotations

import os
from collections.abc import Iterator, MutableMapping
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.core.result import Ok
from schemathesis.schemas import BaseSchema
from structlog.testing import capture_logs

from tests.api.conftest import Api

FUZZ_EXAMPLES = int(os.environ.get("GRIDLOOP_FUZZ_EXAMPLES", "10"))
"""Examples per operation and generation mode; `make fuzz` raises it (FUZZ_EXAMPLES, docs/fuzzing.md)."""
DERANDOMIZE = os.environ.get("HYPOTHESIS_PROFILE", "ci") != "fuzz"
"""Derandomized unless fuzzing: the same examples on every CI run, so a failure in CI is a failure on a laptop;
`make fuzz` (HYPOTHESIS_PROFILE=fuzz) draws new ones each run."""

Logs = list[MutableMapping[str, Any]]


def openapi(api: Api, token: str | None) -> BaseSchema:
    """The served OpenAPI document, its requests sent with ``token`` (or none)."""
    config = SchemathesisConfig.from_dict({"headers": {"Authorization": f"Bearer {token}"}} if token else {})
    return schemathesis.openapi.from_url(f"{api.url}/openapi.json", config=config)


def fuzz(schema: BaseSchema, subtests: pytest.Subtests, *, authenticated: bool) -> None:
    """Every operation, with requests that fit the document and with requests that do not."""
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), f"the OpenAPI document is malformed: {result.err()}"
        operation = result.ok()
        for mode in GenerationMode:
            with subtests.test(operation=operation.label, mode=mode.value):

                @settings(
                    max_examples=FUZZ_EXAMPLES,
                    derandomize=DERANDOMIZE,
                    database=None,
                    deadline=None,
                    suppress_health_check=list(HealthCheck),
                )
                @given(case=operation.as_strategy(mode))
                def request(case: schemathesis.Case[Any]) -> None:
                    response = case.call_and_validate(checks=[not_a_server_error])
                    if not authenticated and case.path.startswith("/v1/"):
                        # Refused: 401, or 400/422 for a body that cannot even be parsed (that comes first).
                        assert response.status_code >= 400, f"{case.method} {case.formatted_path} without a token"

                try:
                    request()
                except Unsatisfiable:
                    # An operation without parameters or a body has nothing to malform.
                    if mode is GenerationMode.POSITIVE:
                        raise


@pytest.fixture
def server_log() -> Iterator[Logs]:
    """The server's log lines, kept rather than printed: its threads printing to stdout while the subtests report
    to the terminal from the main thread crash CPython's text streams (a segmentation fault under fd capture)."""
    with capture_logs() as logs:
        yield logs


def failures(logs: Logs) -> list[str]:
    return [f"{line['method']} {line['path']}" for line in logs if line["event"] == "api_internal_error"]


def test_no_request_of_an_admin_makes_the_server_fail(api: Api, subtests: pytest.Subtests, server_log: Logs) -> None:
    fuzz(openapi(api, api.token("admin")), subtests, authenticated=True)
    assert failures(server_log) == []


def test_no_request_without_a_token_makes_the_server_fail_or_gets_through(
    api: Api, subtests: pytest.Subtests, server_log: Logs
) -> None:
    fuzz(openapi(api, None), subtests, authenticated=False)
    assert failures(server_log) == []
