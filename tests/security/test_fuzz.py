"""Schemathesis over the served OpenAPI document, in-process (WSGI, no network), all checks.

The suite runs a short pass over the operations that hostile input reaches first (sign-in, the
admin analytics and organizations); `make fuzz` runs every operation with more examples (FUZZ_ALL=1,
FUZZ_EXAMPLES=N).
"""
import os

import pytest
import schemathesis
from schemathesis.specs.openapi.checks import positive_data_acceptance
from hypothesis import HealthCheck, given, settings

from tests.helpers import bearer, create_user

FUZZ_ALL = os.environ.get("FUZZ_ALL") == "1"
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "50" if FUZZ_ALL else "8"))
# Every check but this one: OpenAPI 3.0 cannot say "startDate on or before endDate" or "totalTokens
# equals input plus output", so schema-valid requests that break such a rule are rightly a 422.
CROSS_FIELD_RULES = [positive_data_acceptance]
SUITE_OPERATIONS = (r"^/(auth/(login|register)|admin/openai/(dashboard|timeseries|usage|audit-log)"
                    r"|admin/orgs(/\{org_id\}/members)?)$")


@pytest.fixture
def fuzzed_app(make_app):
    app = make_app()
    create_user(app, "fuzz-admin@example.com", role="admin")
    app.config["FUZZ_HEADERS"] = bearer(app.test_client(), "fuzz-admin@example.com")
    return app


def _operations(app):
    schema = schemathesis.openapi.from_wsgi("/docs/openapi.json", app)
    if not FUZZ_ALL:
        schema = schema.include(path_regex=SUITE_OPERATIONS)
    return [result.ok() for result in schema.get_all_operations()]


def test_no_input_breaks_the_api(fuzzed_app):
    operations = _operations(fuzzed_app)
    assert len(operations) >= (30 if FUZZ_ALL else 6)
    failures = []
    for operation in operations:
        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, derandomize=not FUZZ_ALL, database=None,
                  suppress_health_check=list(HealthCheck))
        def no_failure(case):
            case.call_and_validate(headers=fuzzed_app.config["FUZZ_HEADERS"], excluded_checks=CROSS_FIELD_RULES)

        try:
            no_failure()
        except Exception as exc:  # keep going: one report lists every operation that failed
            failures.append(f"{operation.label}: {str(exc).strip()[:2000]}")
    assert not failures, "\n\n".join(failures)
