"""The simulator against the published OpenAPI contract, with schemathesis.

Requests are generated from the spec (valid ones and deliberately invalid ones) and sent to a
live `SimulatorServer`. The spec documents only the 200 answer, so the checks are: no 5xx, every
200 matches `ListActivityLogResponse`, and anything else is a NestJS-style 400 (invalid input
is allowed to be refused, but only that way).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import jsonschema_rs
import pytest
import schemathesis
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import Case, CheckContext, GenerationMode, Response
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
)
from tfy_audit.simulator import (
    Simulator,
    SimulatorServer,
    dense_burst,
    generate_history,
    odd_events,
)
from tfy_audit.simulator.spec_enums import conforms_to_spec_enums

from tests.conftest import spec_path

AUTH = {"Authorization": "Bearer tfy-sim-key"}
END = datetime(2026, 8, 1, tzinfo=UTC)


SPEC = spec_path()


def _events() -> list[dict[str, Any]]:
    # Values outside the spec's enums are faithful (the service is ahead of its contract) but
    # would fail schema conformance by definition; they are checked separately below.
    odd = [e for e in odd_events(END - timedelta(days=1)) if conforms_to_spec_enums(e)]
    history = generate_history(2_000, days=14, end=END) + dense_burst(END - timedelta(days=2), 30)
    return [e for e in history if conforms_to_spec_enums(e)] + odd


@pytest.fixture(scope="module")
def server() -> Iterator[SimulatorServer]:
    with SimulatorServer(Simulator(events=_events())) as srv:
        yield srv


def _operation() -> Any:
    schema = schemathesis.openapi.from_path(SPEC) if SPEC.exists() else None
    return schema["/api/svc/v1/audit-logs"]["GET"] if schema is not None else None


OPERATION = _operation()
CASES = (
    st.one_of(
        OPERATION.as_strategy(GenerationMode.POSITIVE),
        OPERATION.as_strategy(GenerationMode.NEGATIVE),
    )
    if OPERATION is not None
    else st.nothing()
)


def refusals_are_nestjs_400(ctx: CheckContext, response: Response, case: Case[Any]) -> bool | None:
    """Undocumented statuses are acceptable only as the service's validation error, or as 401
    when the generator deliberately left out the credentials."""
    if response.status_code == 200:
        return None
    if response.status_code == 401:
        sent = response.request.headers.get("Authorization")
        assert sent != AUTH["Authorization"], "401 despite the right key"
        return None
    assert response.status_code == 400, f"undocumented status {response.status_code}"
    body = response.json()
    assert body["statusCode"] == 400
    assert body["error"] == "Bad Request"
    assert isinstance(body["message"], list | str)
    return None


def pages_are_consistent(ctx: CheckContext, response: Response, case: Case[Any]) -> bool | None:
    if response.status_code != 200:
        return None
    body = response.json()
    pagination = body["pagination"]
    if (case.query or {}).get("metric") == "count":
        assert body["data"] == []
        return None
    assert len(body["data"]) <= pagination["limit"]
    assert len(body["data"]) <= pagination["total"]
    assert len({e["id"] for e in body["data"]}) == len(body["data"])
    return None


CHECKS = [
    not_a_server_error,
    response_schema_conformance,
    content_type_conformance,
    refusals_are_nestjs_400,
    pages_are_consistent,
]


@settings(
    max_examples=250,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(case=CASES)
def test_generated_requests_get_conforming_answers(
    server: SimulatorServer, case: Case[Any]
) -> None:
    # The bearer key replaces whatever token the generator made up for the `jwt` scheme.
    case.call_and_validate(base_url=server.url, headers=AUTH, checks=CHECKS, timeout=10)


def test_every_event_shape_conforms_except_enum_values() -> None:
    """History and odd events, including unknown enum values: with the enums lifted, each one
    must still validate against the spec's ActivityLog schema."""
    spec = yaml.safe_load(SPEC.read_text())
    schemas = spec["components"]["schemas"]
    for prop in ("action", "resourceType", "parentResourceType"):
        schemas["ActivityLog"]["properties"][prop].pop("enum")
    schemas["SubjectType"].pop("enum")
    for sub in schemas["Subject"]["properties"].values():
        if sub.pop("nullable", False):
            sub["type"] = [sub["type"], "null"]
    schema = {"$ref": "#/components/schemas/ActivityLog", "components": {"schemas": schemas}}
    validator = jsonschema_rs.validator_for(schema, validate_formats=True)
    events = generate_history(5_000, end=END) + odd_events(END)
    for event in events:
        errors = [e.message for e in validator.iter_errors(event)]
        assert not errors, (event["id"], errors[:3])
