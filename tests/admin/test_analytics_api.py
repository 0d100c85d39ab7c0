import math
import random
from datetime import timedelta

import pytest
from bson import ObjectId

from tests.helpers import create_user, insert_records, usage_record, utc


@pytest.fixture
def ledger(app):
    """Three users over 2024-01-30 .. 2024-02-02, with records on the day edges and inactive ones."""
    alice = create_user(app, "alice@example.com")
    bob = create_user(app, "bob@example.com")
    carol = create_user(app, "carol@example.com")
    records = [
        usage_record(alice, utc(2024, 1, 30, 23, 59, 59, 999000), 100, 50, 0.0000675),
        usage_record(alice, utc(2024, 1, 31, 0, 0, 0), 200, 80, 0.000078),
        usage_record(alice, utc(2024, 2, 1, 12, 0), 300, 120, 0.000117, model="gpt-4o", cached=100),
        usage_record(bob, utc(2024, 1, 31, 8, 30), 1000, 400, 0.00039),
        usage_record(bob, utc(2024, 2, 1, 23, 59, 59, 999000), 50, 10, 0.0000135),
        usage_record(bob, utc(2024, 2, 2, 0, 0), 70, 30, 0.0000285),
        usage_record(carol, utc(2024, 1, 31, 9, 0), 5000, 1, 0.0007506, active=False),
        usage_record(carol, utc(2024, 2, 1, 9, 0), 10, 5, 0.0000045),
    ]
    insert_records(app, records)
    return {"records": records, "alice": alice, "bob": bob, "carol": carol}


def expected_totals(records, start=None, end=None, user=None):
    chosen = [r for r in records if r["isActive"]
              and (start is None or r["date"] >= start) and (end is None or r["date"] <= end)
              and (user is None or r["userId"] == user["_id"])]
    return {
        "totalTokens": sum(r["promptTokens"] + r["completionTokens"] for r in chosen),
        "promptTokens": sum(r["promptTokens"] for r in chosen),
        "completionTokens": sum(r["completionTokens"] for r in chosen),
        "cachedInputTokens": sum(r["cachedInputTokens"] for r in chosen),
        "cacheWriteTokens": sum(r["cacheWriteTokens"] for r in chosen),
        "reasoningTokens": sum(r["reasoningTokens"] for r in chosen),
        "totalCost": round(math.fsum(r["cost"] for r in chosen), 10),
        "totalRequests": len(chosen),
    }, chosen


@pytest.mark.parametrize("start, end", [
    (None, None), ("2024-01-31", "2024-02-01"), ("2024-01-30", "2024-01-30"),
    ("2024-02-02", None), (None, "2024-01-31"), ("2024-03-01", "2024-03-31"),
])
def test_dashboard_matches_sums_over_the_inclusive_range(client, admin_headers, ledger, start, end):
    query = {k: v for k, v in (("startDate", start), ("endDate", end)) if v}
    response = client.get("/admin/openai/dashboard", query_string=query, headers=admin_headers)
    assert response.status_code == 200
    assert response.json["message"] == "OpenAI usage statistics retrieved successfully"
    totals, chosen = expected_totals(ledger["records"], start, end)
    data = response.json["data"]
    assert {k: v for k, v in data.items() if k not in ("byOutcome", "failedCost", "failedRequests", "projection")} == {
        **totals, "uniqueUsers": len({r["userId"] for r in chosen})}
    assert (data["failedCost"], data["failedRequests"]) == (0.0, 0)
    assert [item["outcome"] for item in data["byOutcome"]] == (["ok"] if chosen else [])


def test_day_edges_are_inclusive_utc_days(client, admin_headers, ledger):
    data = client.get("/admin/openai/dashboard", query_string={"startDate": "2024-01-31", "endDate": "2024-02-01"},
                      headers=admin_headers).json["data"]
    # 23:59:59.999 on 01-30 and 00:00 on 02-02 fall outside; 00:00 on 01-31 and 23:59:59.999 on 02-01 inside.
    # Inside: alice 01-31 00:00 (280) and 02-01 (420), bob 01-31 (1400) and 02-01 23:59:59.999 (60), carol 02-01 (15).
    assert data["totalRequests"] == 5
    assert data["totalTokens"] == 280 + 420 + 1400 + 60 + 15


def test_top_users_are_ordered_by_tokens_and_limited(client, admin_headers, ledger):
    response = client.get("/admin/openai/top-users", query_string={"limit": 2}, headers=admin_headers)
    assert response.status_code == 200
    assert response.json["message"] == "Top 2 users retrieved successfully"
    rows = response.json["data"]
    assert [r["userEmail"] for r in rows] == ["bob@example.com", "alice@example.com"]
    bob_totals, _ = expected_totals(ledger["records"], user=ledger["bob"])
    assert rows[0] == {"_id": str(ledger["bob"]["_id"]), "userEmail": "bob@example.com", **bob_totals}


def test_top_users_ties_break_by_user_id(app, client, admin_headers):
    users = [create_user(app, f"tie{i}@example.com") for i in range(4)]
    insert_records(app, [usage_record(u, utc(2024, 5, 1), 10, 10, 0.00001) for u in users])
    rows = client.get("/admin/openai/top-users", headers=admin_headers).json["data"]
    assert [r["_id"] for r in rows] == sorted(str(u["_id"]) for u in users)


def test_top_users_default_limit_is_10(app, client, admin_headers):
    users = [create_user(app, f"u{i}@example.com") for i in range(12)]
    insert_records(app, [usage_record(u, utc(2024, 5, 1), 10 + i, 1, 0.0) for i, u in enumerate(users)])
    rows = client.get("/admin/openai/top-users", headers=admin_headers).json["data"]
    assert [r["userEmail"] for r in rows] == [f"u{i}@example.com" for i in range(11, 1, -1)]


def test_user_stats_matches_sums_and_excludes_inactive(client, admin_headers, ledger):
    for name in ("alice", "bob", "carol"):
        user = ledger[name]
        response = client.get(f"/admin/openai/user/{user['_id']}/stats",
                              query_string={"startDate": "2024-01-31"}, headers=admin_headers)
        assert response.status_code == 200
        assert response.json["message"] == f"Usage statistics for user {user['_id']} retrieved successfully"
        totals, _ = expected_totals(ledger["records"], start="2024-01-31", user=user)
        assert response.json["data"] == totals


def test_user_stats_for_a_user_without_usage_is_zeros(app, client, admin_headers):
    idle = create_user(app, "idle@example.com")
    data = client.get(f"/admin/openai/user/{idle['_id']}/stats", headers=admin_headers).json["data"]
    assert data == {"totalTokens": 0, "promptTokens": 0, "completionTokens": 0, "cachedInputTokens": 0,
                    "cacheWriteTokens": 0, "reasoningTokens": 0, "totalCost": 0.0, "totalRequests": 0}


def test_unknown_and_malformed_user_ids(client, admin_headers):
    for path in ("stats", "history"):
        unknown = client.get(f"/admin/openai/user/{ObjectId()}/{path}", headers=admin_headers)
        assert unknown.status_code == 404 and unknown.json["success"] is False
        malformed = client.get(f"/admin/openai/user/user123/{path}", headers=admin_headers)
        assert malformed.status_code == 400
        assert malformed.json["message"] == "userId must be a 24-character hexadecimal id"


def test_history_pages_newest_first(app, client, admin_headers):
    user = create_user(app, "busy@example.com")
    base = utc(2024, 3, 1)
    records = [usage_record(user, base + timedelta(minutes=i), 10 + i, 5, 0.00001) for i in range(25)]
    records.append(usage_record(user, base, 999, 1, 0.0, active=False))
    random.Random(7).shuffle(records)
    insert_records(app, records)
    newest_first = sorted((r for r in records if r["isActive"]), key=lambda r: r["timestamp"], reverse=True)

    seen = []
    for page in (1, 2, 3):
        response = client.get(f"/admin/openai/user/{user['_id']}/history",
                              query_string={"page": page, "limit": 10}, headers=admin_headers)
        assert response.status_code == 200
        body = response.json["data"]
        assert (body["total"], body["page"], body["totalPages"], body["limit"]) == (25, page, 3, 10)
        seen += body["data"]
    assert [r["_id"] for r in seen] == [str(r["_id"]) for r in newest_first]
    first = seen[0]
    assert first["timestamp"] == "2024-03-01T00:24:00.000Z"
    assert first["userId"] == str(user["_id"]) and first["promptTokens"] == 34

    default = client.get(f"/admin/openai/user/{user['_id']}/history", headers=admin_headers).json["data"]
    assert (default["limit"], len(default["data"]), default["totalPages"]) == (50, 25, 1)
    beyond = client.get(f"/admin/openai/user/{user['_id']}/history", query_string={"page": 9},
                        headers=admin_headers).json["data"]
    assert beyond["data"] == [] and beyond["total"] == 25


@pytest.mark.parametrize("path, query, field", [
    ("dashboard", {"startDate": "2024-13-01"}, "startDate"),
    ("dashboard", {"endDate": "yesterday"}, "endDate"),
    ("dashboard", {"startDate": "2024-02-02", "endDate": "2024-02-01"}, "startDate"),
    ("top-users", {"limit": 0}, "limit"),
    ("top-users", {"limit": 101}, "limit"),
    ("top-users", {"limit": "ten"}, "limit"),
    ("history", {"page": 0}, "page"),
    ("history", {"limit": 101}, "limit"),
])
def test_bad_query_parameters_are_named(app, client, admin_headers, path, query, field):
    if path == "history":
        path = f"user/{create_user(app, 'h@example.com')['_id']}/history"
    response = client.get(f"/admin/openai/{path}", query_string=query, headers=admin_headers)
    assert response.status_code == 422
    assert field in response.json["errors"]
    assert field in response.json["message"]


def test_generated_calls_show_on_all_four_endpoints(client, user_headers, admin_headers):
    for count in (1, 2):
        assert client.post("/api/test-generation", json={"prompt": "x", "count": count},
                           headers=user_headers).status_code == 200
    me = client.get("/auth/me", headers=user_headers).json["data"]
    dashboard = client.get("/admin/openai/dashboard", headers=admin_headers).json["data"]
    top = client.get("/admin/openai/top-users", headers=admin_headers).json["data"]
    stats = client.get(f"/admin/openai/user/{me['id']}/stats", headers=admin_headers).json["data"]
    history = client.get(f"/admin/openai/user/{me['id']}/history", headers=admin_headers).json["data"]
    assert dashboard["totalRequests"] == stats["totalRequests"] == history["total"] == 2
    assert dashboard["uniqueUsers"] == 1
    assert top[0]["_id"] == me["id"] and top[0]["totalTokens"] == dashboard["totalTokens"] == stats["totalTokens"]
    assert sum(r["totalTokens"] for r in history["data"]) == stats["totalTokens"]
    assert all(r["demo"] for r in history["data"])
