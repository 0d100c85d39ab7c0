import pytest
from bson import ObjectId

from backend.db import TESTCASES, USAGE
from tests.helpers import bearer, cases_json, chat_completion, create_user, read_events

CASE = {"title": "Login with valid credentials", "description": "User logs in", "preconditions": ["User exists"],
        "steps": ["Open login", "Submit"], "expectedResult": "Dashboard shown", "priority": "high",
        "type": "functional"}
USAGE_IN = {"inputTokens": 120, "outputTokens": 350, "estimatedCost": 0.000235}


@pytest.fixture
def two_users(app, client):
    create_user(app, "ann@example.com")
    create_user(app, "ben@example.com")
    return bearer(client, "ann@example.com"), bearer(client, "ben@example.com")


def test_create_with_token_usage_and_read_it_back_in_full(client, two_users):
    ann, _ = two_users
    created = client.post("/api/testcases", json={**CASE, "tokenUsage": USAGE_IN}, headers=ann)
    assert created.status_code == 201
    case = created.json["data"]
    assert case["tokenUsage"] == {**USAGE_IN, "totalTokens": 470}
    assert case["aiGenerated"] is False and case["createdAt"].endswith("Z")
    plain = client.get(f"/api/testcases/{case['id']}", headers=ann).json["data"]
    assert "tokenUsage" not in plain and plain["title"] == CASE["title"]
    full = client.get(f"/api/testcases/{case['id']}/full", headers=ann)
    assert full.status_code == 200 and full.json["data"]["tokenUsage"]["totalTokens"] == 470


def test_token_usage_is_optional_and_validated(client, two_users):
    ann, _ = two_users
    assert client.post("/api/testcases", json=CASE, headers=ann).json["data"]["tokenUsage"] is None
    for bad, field in (({"inputTokens": -1, "outputTokens": 1}, "inputTokens"),
                       ({"inputTokens": 1, "outputTokens": 1, "totalTokens": 5}, "totalTokens"),
                       ({"inputTokens": 1}, "outputTokens"),
                       ({"inputTokens": 1, "outputTokens": 1, "estimatedCost": -0.5}, "estimatedCost")):
        response = client.post("/api/testcases", json={**CASE, "tokenUsage": bad}, headers=ann)
        assert response.status_code == 422
        assert field in response.json["errors"]["tokenUsage"]


def test_create_validates_fields(client, two_users):
    ann, _ = two_users
    response = client.post("/api/testcases", json={"priority": "urgent"}, headers=ann)
    assert response.status_code == 422
    assert set(response.json["errors"]) == {"title", "priority"}


def test_another_users_case_is_404_everywhere(client, two_users):
    ann, ben = two_users
    case_id = client.post("/api/testcases", json=CASE, headers=ann).json["data"]["id"]
    for method, path in (("get", ""), ("get", "/full"), ("patch", ""), ("delete", "")):
        response = getattr(client, method)(f"/api/testcases/{case_id}{path}", headers=ben,
                                           **({"json": {"title": "x"}} if method == "patch" else {}))
        assert response.status_code == 404, (method, path)
    assert client.get(f"/api/testcases/{case_id}", headers=ann).status_code == 200


def test_admins_see_everyones_cases(app, client, two_users):
    ann, ben = two_users
    client.post("/api/testcases", json=CASE, headers=ann)
    client.post("/api/testcases", json={**CASE, "title": "Ben's"}, headers=ben)
    create_user(app, "root@example.com", role="admin")
    admin = bearer(client, "root@example.com")
    assert client.get("/api/testcases", headers=admin).json["data"]["total"] == 2
    assert client.get("/api/testcases", headers=ann).json["data"]["total"] == 1


def test_a_platform_admins_api_key_acts_as_a_plain_user_on_test_cases(app, client, two_users):
    ann, _ = two_users
    anns = client.post("/api/testcases", json=CASE, headers=ann).json["data"]["id"]
    create_user(app, "root@example.com", role="admin")
    admin = bearer(client, "root@example.com")
    secret = client.post("/api/keys", json={"name": "ci"}, headers=admin).json["data"]["secret"]
    key = {"Authorization": f"Bearer {secret}"}
    assert client.get("/api/testcases", headers=key).json["data"]["total"] == 0
    for method, path in (("get", ""), ("get", "/full"), ("patch", ""), ("delete", "")):
        response = getattr(client, method)(f"/api/testcases/{anns}{path}", headers=key,
                                           **({"json": {"title": "x"}} if method == "patch" else {}))
        assert response.status_code == 404, (method, path)
    own = client.post("/api/testcases", json=CASE, headers=key).json["data"]["id"]
    assert [c["id"] for c in client.get("/api/testcases", headers=key).json["data"]["data"]] == [own]
    assert client.get("/api/testcases", headers=admin).json["data"]["total"] == 2


def test_list_is_paginated_newest_first_and_filterable(client, two_users):
    ann, _ = two_users
    ids = []
    for i in range(7):
        body = {**CASE, "title": f"Case {i}", "priority": "low" if i % 2 else "high"}
        ids.append(client.post("/api/testcases", json=body, headers=ann).json["data"]["id"])
    page = client.get("/api/testcases", query_string={"limit": 3, "page": 2}, headers=ann).json["data"]
    assert (page["total"], page["totalPages"], page["page"]) == (7, 3, 2)
    assert [c["id"] for c in page["data"]] == list(reversed(ids))[3:6]
    low = client.get("/api/testcases", query_string={"priority": "low"}, headers=ann).json["data"]
    assert low["total"] == 3
    found = client.get("/api/testcases", query_string={"q": "case 4"}, headers=ann).json["data"]
    assert [c["title"] for c in found["data"]] == ["Case 4"]
    bad = client.get("/api/testcases", query_string={"priority": "urgent"}, headers=ann)
    assert bad.status_code == 422 and "priority" in bad.json["errors"]


def test_patch_changes_only_what_is_sent(client, two_users):
    ann, _ = two_users
    case = client.post("/api/testcases", json={**CASE, "tokenUsage": USAGE_IN}, headers=ann).json["data"]
    response = client.patch(f"/api/testcases/{case['id']}", json={"priority": "low"}, headers=ann)
    assert response.status_code == 200
    updated = response.json["data"]
    assert updated["priority"] == "low" and updated["title"] == CASE["title"]
    assert updated["tokenUsage"]["totalTokens"] == 470
    assert updated["updatedAt"] >= case["updatedAt"]
    cleared = client.patch(f"/api/testcases/{case['id']}", json={"tokenUsage": None}, headers=ann).json["data"]
    assert cleared["tokenUsage"] is None
    partial = client.patch(f"/api/testcases/{case['id']}", json={"tokenUsage": {"outputTokens": 3}}, headers=ann)
    assert partial.status_code == 422 and partial.json["errors"]["tokenUsage"] == {
        "inputTokens": ["Missing data for required field."]}
    bad = client.patch(f"/api/testcases/{case['id']}", json={"type": "weird"}, headers=ann)
    assert bad.status_code == 422


def test_delete_then_404(client, two_users):
    ann, _ = two_users
    case_id = client.post("/api/testcases", json=CASE, headers=ann).json["data"]["id"]
    deleted = client.delete(f"/api/testcases/{case_id}", headers=ann)
    assert deleted.status_code == 200 and deleted.json == {"success": True, "data": None, "message": "Test case deleted"}
    assert client.get(f"/api/testcases/{case_id}", headers=ann).status_code == 404
    assert client.delete(f"/api/testcases/{case_id}", headers=ann).status_code == 404


def test_bad_and_unknown_ids(client, two_users):
    ann, _ = two_users
    assert client.get("/api/testcases/not-an-id", headers=ann).status_code == 400
    assert client.get(f"/api/testcases/{ObjectId()}", headers=ann).status_code == 404
    assert client.get("/api/testcases").status_code == 401


def test_generate_with_ai_saves_nothing_and_is_tracked(openai_app, fake_openai):
    client = openai_app.test_client()
    create_user(openai_app, "dev@example.com")
    fake_openai.reply(chat_completion(cases_json(2), 800, 200, cached=256))
    response = client.post("/api/testcases/generate-with-ai", json={"prompt": "Signup", "count": 2},
                           headers=bearer(client, "dev@example.com"))
    assert response.status_code == 200
    data = response.json["data"]
    assert [c["title"] for c in data["testCases"]] == ["Case 1", "Case 2"]
    assert {k: data["tokenUsage"][k] for k in ("inputTokens", "outputTokens", "totalTokens")} == {
        "inputTokens": 800, "outputTokens": 200, "totalTokens": 1000}
    assert data["tokenUsage"]["estimatedCost"] == round((544 * 0.15 + 256 * 0.075 + 200 * 0.60) / 1e6, 10)
    db = openai_app.extensions["mongo"].db
    assert db[TESTCASES].count_documents({}) == 0
    assert [r["operation"] for r in db[USAGE].find()] == ["testcase_generation"]


def test_generate_and_save_with_ai_returns_saved_cases_with_ids(openai_app, fake_openai):
    client = openai_app.test_client()
    create_user(openai_app, "dev@example.com")
    headers = bearer(client, "dev@example.com")
    fake_openai.reply(chat_completion(cases_json(3), 900, 300))
    response = client.post("/api/testcases/generate-and-save-with-ai", json={"prompt": "Signup", "count": 3},
                           headers=headers)
    assert response.status_code == 201
    saved = response.json["data"]["testCases"]
    assert len(saved) == 3 and all(ObjectId.is_valid(c["id"]) for c in saved)
    full = client.get(f"/api/testcases/{saved[0]['id']}/full", headers=headers).json["data"]
    assert full["aiGenerated"] is True and (full["provider"], full["modelName"]) == ("openai", "gpt-4o-mini")
    # One call of 900 + 300 tokens split over three cases: shares that sum to the call.
    assert full["tokenUsage"]["totalTokens"] == 400
    assert full["tokenUsage"]["generation"]["totalTokens"] == 1200
    db = openai_app.extensions["mongo"].db
    assert full["tokenUsage"]["callIds"] == [db[USAGE].find_one()["callId"]]
    assert [r["operation"] for r in db[USAGE].find()] == ["testcase_generation_saved"]


def test_generate_and_save_streams_too(client, user_headers, db):
    response = client.post("/api/testcases/generate-and-save-with-ai",
                           json={"prompt": "Upload", "count": 2, "stream": True}, headers=user_headers)
    events = read_events(response)
    assert events[-1][0] == "done"
    saved = events[-1][1]["data"]["testCases"]
    assert len(saved) == 2 and all(ObjectId.is_valid(c["id"]) for c in saved)
    assert db[TESTCASES].count_documents({}) == 2 and db[USAGE].count_documents({}) == 1


def test_token_counts_and_budgets_that_would_overflow_the_store_are_422(client, two_users, admin_headers):
    ann, _ = two_users
    huge = {"title": "t", "tokenUsage": {"inputTokens": 4611686018427387904, "outputTokens": 4611686018427387904}}
    response = client.post("/api/testcases", json=huge, headers=ann)
    assert response.status_code == 422 and "inputTokens" in response.json["errors"]["tokenUsage"]
    for limits in ({"usdPerDay": 1e300}, {"usdPerMonth": 922337204}, {"tokensPerDay": 10**16}):
        assert client.put("/admin/openai/budgets/default", json=limits, headers=admin_headers).status_code == 422
    for count in (5.5, "5"):
        assert client.post("/api/test-generation", json={"prompt": "x", "count": count},
                           headers=ann).status_code == 422
