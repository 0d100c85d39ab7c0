"""GET /admin/openai/reconciliation: stored results listed for admins, mismatches first."""
from datetime import date

import pytest

from backend.db import RECONCILIATIONS, get_db
from tests.helpers import bearer, create_user
from tests.reconciliation.support import NOW

URL = "/admin/openai/reconciliation"


def stored(provider, day, verdict):
    """A stored result as the reconciliation writes it (the figures only need to round-trip)."""
    counts = {"requests": 2, "uncachedInputTokens": 100, "cachedInputTokens": 0, "cacheWriteTokens": 0,
              "outputTokens": 10}
    checked = verdict in ("match", "ledger_short", "ledger_over")
    difference = {**dict.fromkeys(counts, 0), "requests": 1 if verdict == "ledger_short" else 0}
    return {"_id": f"{provider}|{day}", "provider": provider, "date": day, "verdict": verdict,
            "reason": None if checked else "why not", "checkedAt": NOW, "tolerance": 0,
            "requestsCompared": provider == "openai", "filters": {"projectId": None, "apiKeyId": None},
            "ledger": {**counts, "estimatedRequests": 0}, "reported": counts if checked else None,
            "difference": difference if checked else None,
            "models": [{"model": "gpt-4o-mini-2024-07-18", "verdict": verdict if checked else None,
                        "ledger": {**counts, "estimatedRequests": 0}, "reported": counts if checked else None,
                        "difference": difference if checked else None}]}


@pytest.fixture
def listed(recon_app):
    app = recon_app()
    get_db(app)[RECONCILIATIONS].insert_many([
        stored("openai", "2026-11-22", "match"),
        stored("anthropic", "2026-11-22", "unavailable"),
        stored("demo", "2026-11-22", "not_supported"),
        stored("openai", "2026-11-21", "ledger_short"),
        stored("anthropic", "2026-11-20", "ledger_over"),
        stored("openai", "2026-10-01", "match"),  # outside the default 30 days
    ])
    client = app.test_client()
    create_user(app, "admin@example.com", role="admin")
    create_user(app, "user@example.com")
    return client, bearer(client, "admin@example.com"), bearer(client, "user@example.com")


def rows(response):
    assert response.status_code == 200, response.json
    return [(row["provider"], row["date"], row["verdict"]) for row in response.json["data"]["results"]]


def test_admins_get_the_last_30_days_mismatches_first(listed):
    client, admin, _ = listed
    response = client.get(URL, headers=admin)
    assert rows(response) == [
        ("openai", "2026-11-21", "ledger_short"),
        ("anthropic", "2026-11-20", "ledger_over"),
        ("anthropic", "2026-11-22", "unavailable"),
        ("openai", "2026-11-22", "match"),
        ("demo", "2026-11-22", "not_supported"),
    ]
    body = response.json
    assert body["success"] is True
    assert (body["data"]["startDate"], body["data"]["endDate"]) == ("2026-10-25", "2026-11-23")
    short = body["data"]["results"][0]
    assert short["checkedAt"] == "2026-11-23T09:00:00.000Z"
    assert short["difference"]["requests"] == 1
    assert short["models"][0]["model"] == "gpt-4o-mini-2024-07-18"
    assert "_id" not in short
    unavailable = body["data"]["results"][2]
    assert (unavailable["reason"], unavailable["reported"], unavailable["models"][0]["verdict"]) == (
        "why not", None, None)


def test_filtering_by_provider_and_dates(listed):
    client, admin, _ = listed
    assert rows(client.get(URL, query_string={"provider": "openai"}, headers=admin)) == [
        ("openai", "2026-11-21", "ledger_short"), ("openai", "2026-11-22", "match")]
    assert rows(client.get(URL, query_string={"startDate": "2026-09-01", "endDate": "2026-11-20"}, headers=admin)) == [
        ("anthropic", "2026-11-20", "ledger_over"), ("openai", "2026-10-01", "match")]
    assert rows(client.get(URL, query_string={"startDate": "2026-11-22", "endDate": "2026-11-22",
                                              "provider": "anthropic"}, headers=admin)) == [
        ("anthropic", "2026-11-22", "unavailable")]


def test_without_a_token_401_and_for_a_non_admin_403(listed):
    client, _, user = listed
    assert client.get(URL).status_code == 401
    response = client.get(URL, headers=user)
    assert response.status_code == 403
    assert response.json == {"success": False, "message": "Admin role required"}


@pytest.mark.parametrize("query, field", [
    ({"startDate": "2026-13-01"}, "startDate"),
    ({"endDate": "22-11-2026"}, "endDate"),
    ({"startDate": "2026-11-22", "endDate": "2026-11-01"}, "startDate"),
    ({"startDate": "2024-01-01", "endDate": "2026-11-22"}, "endDate"),
    ({"provider": "cohere"}, "provider"),
])
def test_bad_dates_and_providers_are_422_naming_the_parameter(listed, query, field):
    client, admin, _ = listed
    response = client.get(URL, query_string=query, headers=admin)
    assert response.status_code == 422
    assert response.json["success"] is False
    assert field in response.json["errors"]


def test_the_endpoint_is_in_the_openapi_document(listed):
    client, _, _ = listed
    spec = client.get("/docs/openapi.json").json
    operation = spec["paths"][URL]["get"]
    assert {parameter["name"] for parameter in operation["parameters"]} >= {"startDate", "endDate", "provider"}
    assert operation["security"] == [{"bearerAuth": []}]
    assert "ReconciliationList" in str(operation["responses"]["200"])


def test_today_comes_from_the_app_clock(listed):
    client, admin, _ = listed
    answer = client.get(URL, headers=admin).json
    assert answer["timeZone"] == "UTC"  # the providers' days, whatever the organizations' zones
    data = answer["data"]
    assert date.fromisoformat(data["endDate"]) == NOW.date()
