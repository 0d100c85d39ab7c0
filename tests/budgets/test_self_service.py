"""GET /api/me/usage/history and /breakdown: the caller's own calls only (a key's: its owner's)."""
from tests.helpers import bearer, create_user


def _generate(client, headers, tags):
    response = client.post("/api/test-generation", json={"prompt": "Login form", "count": 1, "tags": tags},
                           headers=headers)
    assert response.status_code == 200
    return response.json["data"]["usage"]["totalTokens"]


def test_a_member_sees_only_their_own_calls(app, client):
    create_user(app, "a@example.com")
    create_user(app, "b@example.com")
    alice, bob = bearer(client, "a@example.com"), bearer(client, "b@example.com")
    key = client.post("/api/keys", json={"name": "ci"}, headers=alice).json["data"]["secret"]
    a_calls = [_generate(client, alice, ["ci"]), _generate(client, alice, ["ci", "nightly"]),
               _generate(client, {"Authorization": f"Bearer {key}"}, ["nightly"])]
    _generate(client, bob, ["ci", "secret-project"])

    history = client.get("/api/me/usage/history?limit=2", headers=alice).json["data"]
    assert (history["total"], history["totalPages"], len(history["data"])) == (3, 2, 2)
    rows = history["data"] + client.get("/api/me/usage/history?limit=2&page=2", headers=alice).json["data"]["data"]
    assert [row["userEmail"] for row in rows] == ["a@example.com"] * 3
    assert sorted(row["totalTokens"] for row in rows) == sorted(a_calls)
    by_model = client.get("/api/me/usage/breakdown?by=model", headers=alice).json["data"]
    assert [(row["key"], row["totalTokens"], row["totalRequests"]) for row in by_model] == [
        ("demo", sum(a_calls), 3)]
    by_tag = {row["key"]: row["totalTokens"]
              for row in client.get("/api/me/usage/breakdown?by=tag", headers=alice).json["data"]}
    assert by_tag == {"ci": a_calls[0] + a_calls[1], "nightly": a_calls[1] + a_calls[2]}
    tagged = client.get("/api/me/usage/history?tag=nightly", headers=alice).json["data"]
    assert tagged["total"] == 2
    # The key reads its owner's calls; nothing of the other user anywhere.
    assert client.get("/api/me/usage/history", headers={"Authorization": f"Bearer {key}"}).json["data"]["total"] == 3
    for url in ("/api/me/usage/history", "/api/me/usage/breakdown?by=tag", "/api/me/usage/breakdown?by=model"):
        assert "b@example.com" not in client.get(url, headers=alice).get_data(as_text=True)
        assert "secret-project" not in client.get(url, headers=alice).get_data(as_text=True)


def test_self_service_queries_are_validated(client, user_headers):
    for url in ("/api/me/usage/breakdown", "/api/me/usage/breakdown?by=user", "/api/me/usage/history?page=0",
                "/api/me/usage/history?limit=101", "/api/me/usage/history?tag=a%20b",
                "/api/me/usage/history?startDate=2026-11-02&endDate=2026-11-01"):
        assert client.get(url, headers=user_headers).status_code == 422, url
    assert client.get("/api/me/usage/history").status_code == 401
