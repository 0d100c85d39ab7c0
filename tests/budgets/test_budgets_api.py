"""Budget administration, the 429 a budget answers with, settling and releasing, and /api/me/usage."""
from datetime import datetime, timedelta, timezone

import httpx2
import pytest

from backend.db import get_db
from tests.budgets.support import (
    MAX_OUTPUT,
    build,
    generate,
    prompt_tokens,
    provider_reporting,
    worst_case_tokens,
)
from tests.helpers import bearer, create_user, insert_records, usage_record

INPUT_PER_1M, OUTPUT_PER_1M = 0.15, 0.60  # gpt-4o-mini


@pytest.fixture
def setup(make_app):
    """An OpenAI-backed app where every call reports 120 prompt and 80 completion tokens."""
    transport, calls = provider_reporting(120, 80)
    app = build(make_app, transport)
    user = create_user(app, "dev@example.com")
    create_user(app, "root@example.com", role="admin")
    client = app.test_client()
    return app, client, user, bearer(client, "root@example.com"), bearer(client, "dev@example.com"), calls


def next_midnight():
    now = datetime.now(timezone.utc)
    return datetime(now.year, now.month, now.day, tzinfo=timezone.utc) + timedelta(days=1)


def windows(client, headers):
    response = client.get("/api/me/usage", headers=headers)
    assert response.status_code == 200
    return {w["window"]: w for w in response.json["data"]["windows"]}


def test_admin_sets_reads_lists_and_deletes_budgets(setup):
    _, client, user, admin, _, _ = setup
    url = f"/admin/openai/budgets/{user['_id']}"
    assert client.get(url, headers=admin).status_code == 404

    saved = client.put(url, json={"tokensPerDay": 5000, "usdPerMonth": 2.5}, headers=admin)
    assert saved.status_code == 200
    assert saved.json["data"] == {**saved.json["data"], "userId": str(user["_id"]), "tokensPerDay": 5000,
                                  "usdPerDay": None, "tokensPerMonth": None, "usdPerMonth": 2.5}
    # A PUT replaces the whole budget: limits it leaves out are cleared.
    replaced = client.put(url, json={"usdPerDay": 1}, headers=admin).json["data"]
    assert (replaced["tokensPerDay"], replaced["usdPerDay"], replaced["usdPerMonth"]) == (None, 1.0, None)
    assert client.put("/admin/openai/budgets/default", json={"tokensPerMonth": 100000}, headers=admin).status_code == 200

    listing = client.get("/admin/openai/budgets", headers=admin).json["data"]
    assert listing["default"]["userId"] == "default" and listing["default"]["tokensPerMonth"] == 100000
    assert [b["userId"] for b in listing["users"]] == [str(user["_id"])]

    assert client.delete(url, headers=admin).status_code == 200
    assert client.get(url, headers=admin).status_code == 404
    assert client.delete(url, headers=admin).status_code == 404
    assert client.get("/admin/openai/budgets", headers=admin).json["data"]["users"] == []


@pytest.mark.parametrize("body, field", [
    ({}, "tokensPerDay"),
    ({"tokensPerDay": None, "usdPerDay": None}, "tokensPerDay"),
    ({"tokensPerDay": 0}, "tokensPerDay"),
    ({"usdPerMonth": -1}, "usdPerMonth"),
    ({"usdPerDay": 0}, "usdPerDay"),
    ({"tokensPerDay": "many"}, "tokensPerDay"),
    ({"tokensPerHour": 5}, "tokensPerHour"),
])
def test_invalid_budgets_are_rejected_with_the_field(setup, body, field):
    _, client, user, admin, _, _ = setup
    response = client.put(f"/admin/openai/budgets/{user['_id']}", json=body, headers=admin)
    assert response.status_code == 422
    assert response.json["success"] is False and field in str(response.json["errors"])


def test_budget_owner_must_be_a_user_or_default(setup):
    _, client, _, admin, user_headers, _ = setup
    assert client.put("/admin/openai/budgets/not-an-id", json={"tokensPerDay": 5}, headers=admin).status_code == 400
    missing = client.put("/admin/openai/budgets/6740a0c0e4b0a1b2c3d4e5f6", json={"tokensPerDay": 5}, headers=admin)
    assert missing.status_code == 404 and "not found" in missing.json["message"]
    assert client.get("/admin/openai/budgets", headers=user_headers).status_code == 403
    assert client.get("/admin/openai/budgets").status_code == 401


def test_over_budget_is_a_429_with_limit_used_window_and_retry_after(make_app):
    transport, calls = provider_reporting(120, 80)
    # The app's clock is fixed, so Retry-After is exact however loaded the machine is.
    app = build(make_app, transport, CLOCK=lambda: datetime(2026, 11, 23, 13, 20, 30, tzinfo=timezone.utc))
    user = create_user(app, "dev@example.com")
    create_user(app, "root@example.com", role="admin")
    client = app.test_client()
    client.put(f"/admin/openai/budgets/{user['_id']}", json={"tokensPerDay": 100},
               headers=bearer(client, "root@example.com"))

    response = generate(client, bearer(client, "dev@example.com"))

    assert response.status_code == 429 and calls == []
    assert response.json["success"] is False and "Budget exceeded" in response.json["message"]
    assert response.json["data"] == {"scope": "user", "limit": 100, "used": 0, "unit": "tokens", "window": "day",
                                     "resetsAt": "2026-11-24T00:00:00.000Z"}
    assert response.headers["Retry-After"] == str(10 * 3600 + 39 * 60 + 30)


def test_usd_budget_counts_the_worst_case_cost(setup):
    _, client, user, admin, headers, calls = setup
    worst_usd = (prompt_tokens() * INPUT_PER_1M + MAX_OUTPUT * OUTPUT_PER_1M) / 1e6
    real_usd = (120 * INPUT_PER_1M + 80 * OUTPUT_PER_1M) / 1e6
    # Room for the first worst case, then only the real spend is left booked.
    client.put(f"/admin/openai/budgets/{user['_id']}", json={"usdPerMonth": worst_usd + real_usd / 2},
               headers=admin)

    assert generate(client, headers).status_code == 200
    month = windows(client, headers)["month"]
    assert month["used"]["usd"] == pytest.approx(real_usd, abs=1e-10)
    refused = generate(client, headers)
    assert refused.status_code == 429 and len(calls) == 1
    assert refused.json["data"]["unit"] == "usd" and refused.json["data"]["window"] == "month"
    assert refused.json["data"]["used"] == pytest.approx(real_usd, abs=1e-10)
    now = datetime.now(timezone.utc)
    first_of_next = datetime(now.year + now.month // 12, now.month % 12 + 1, 1, tzinfo=timezone.utc)
    assert refused.json["data"]["resetsAt"] == first_of_next.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def test_a_call_settles_to_its_real_usage_and_a_failed_call_releases(make_app):
    replies = [httpx2.Response(500, json={"error": {"message": "boom", "type": "server_error"}})]
    ok_transport, _ = provider_reporting(120, 80)

    def handler(request):
        return replies.pop(0) if replies else ok_transport.handle_request(request)

    app = build(make_app, httpx2.MockTransport(handler))
    user = create_user(app, "dev@example.com")
    create_user(app, "root@example.com", role="admin")
    client = app.test_client()
    client.put(f"/admin/openai/budgets/{user['_id']}", json={"tokensPerDay": 10_000},
               headers=bearer(client, "root@example.com"))
    headers = bearer(client, "dev@example.com")

    assert generate(client, headers).status_code == 502
    assert windows(client, headers)["day"]["used"]["tokens"] == 0
    assert generate(client, headers).status_code == 200
    day = windows(client, headers)["day"]
    assert day["used"]["tokens"] == 200 and day["remaining"]["tokens"] == 9_800
    assert day["limits"] == {"tokens": 10_000, "usd": None}


def test_default_budget_applies_until_a_user_has_their_own(setup):
    _, client, user, admin, headers, _ = setup
    client.put("/admin/openai/budgets/default", json={"tokensPerDay": 100}, headers=admin)
    assert generate(client, headers).status_code == 429
    client.put(f"/admin/openai/budgets/{user['_id']}", json={"tokensPerDay": 100_000}, headers=admin)
    assert generate(client, headers).status_code == 200
    client.delete(f"/admin/openai/budgets/{user['_id']}", headers=admin)
    assert generate(client, headers).status_code == 429


def test_a_new_budget_counts_what_the_ledger_already_holds_today(setup):
    app, client, user, admin, headers, calls = setup
    now = datetime.now(timezone.utc)
    insert_records(app, [usage_record(user, now, prompt=3000, completion=1000, cost=0.01)])
    client.put(f"/admin/openai/budgets/{user['_id']}", json={"tokensPerDay": 4000 + worst_case_tokens() - 1},
               headers=admin)

    refused = generate(client, headers)

    assert refused.status_code == 429 and refused.json["data"]["used"] == 4000 and calls == []


def test_my_usage_without_a_budget_shows_the_ledger_and_no_limits(setup):
    app, client, user, _, headers, _ = setup
    now = datetime.now(timezone.utc)
    insert_records(app, [usage_record(user, now, prompt=300, completion=100, cost=0.25),
                         usage_record(user, now, prompt=30, completion=10, cost=0.5, active=False)])
    earlier = now.replace(day=1) if now.day > 1 else None
    if earlier:
        insert_records(app, [usage_record(user, earlier, prompt=1000, completion=0, cost=1.0)])

    report = windows(client, headers)

    assert report["day"]["used"] == {"tokens": 400, "usd": 0.25}
    assert report["month"]["used"] == ({"tokens": 1400, "usd": 1.25} if earlier else {"tokens": 400, "usd": 0.25})
    assert report["day"]["limits"] == {"tokens": None, "usd": None}
    assert report["day"]["remaining"] == {"tokens": None, "usd": None}
    assert report["day"]["period"] == now.strftime("%Y-%m-%d") and report["month"]["period"] == now.strftime("%Y-%m")
    assert client.get("/api/me/usage").status_code == 401


def test_budgets_survive_a_restart_on_the_same_store(make_app):
    import mongomock

    store = mongomock.MongoClient(tz_aware=True)
    transport, _ = provider_reporting(120, 80)
    first = build(make_app, transport, store)
    user = create_user(first, "dev@example.com")
    create_user(first, "root@example.com", role="admin")
    client = first.test_client()
    client.put(f"/admin/openai/budgets/{user['_id']}", json={"tokensPerDay": 250 + worst_case_tokens()},
               headers=bearer(client, "root@example.com"))
    assert generate(client, bearer(client, "dev@example.com")).status_code == 200

    second = build(make_app, transport, store).test_client()
    headers = bearer(second, "dev@example.com")
    assert generate(second, headers).status_code == 200
    assert generate(second, headers).status_code == 429
    with first.app_context():
        assert get_db()["budget_counters"].count_documents({"owner": str(user["_id"])}) == 2  # its day and month
