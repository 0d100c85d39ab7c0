"""The platform role outranks every organization role: an admin of the organization a platform
admin sits in (the default one) never sees, lists, caps, revokes or changes anything of theirs."""
import json

from backend.db import DEFAULT_ORG_ID
from tests.helpers import bearer, create_user
from tests.orgs.support import join

DEFAULT = str(DEFAULT_ORG_ID)
BODY = {"prompt": "Login", "count": 1, "tags": ["nightly"], "metadata": {"pipeline": "release"}}


def test_an_org_admin_of_the_default_organization_cannot_reach_the_platform_admin(app, client):
    root = create_user(app, "root@example.com", role="admin")
    platform = bearer(client, "root@example.com")
    create_user(app, "boss@example.com")
    join(client, platform, DEFAULT, "boss@example.com", role="admin")
    boss = bearer(client, "boss@example.com")
    mate = create_user(app, "mate@example.com")
    mates = bearer(client, "mate@example.com")
    root_key = client.post("/api/keys", json={"name": "root-ci"}, headers=platform).json["data"]
    mate_key = client.post("/api/keys", json={"name": "mate-ci"}, headers=mates).json["data"]
    for headers in (platform, mates):
        assert client.post("/api/test-generation", json=BODY, headers=headers).status_code == 200
    root_id, mate_id = str(root["_id"]), str(mate["_id"])

    # Keys: not listed, not revocable, their budget not capped.
    assert [k["id"] for k in client.get("/api/keys", headers=boss).json["data"]] == [mate_key["id"]]
    assert client.delete(f"/api/keys/{root_key['id']}", headers=boss).status_code == 404
    assert client.put(f"/admin/openai/budgets/key/{root_key['id']}", json={"tokensPerDay": 1},
                      headers=boss).status_code == 404
    # Their usage: no history, stats, rows in the usage logs, export or top users.
    for path in (f"/admin/openai/user/{root_id}/history", f"/admin/openai/user/{root_id}/stats",
                 f"/admin/openai/usage?userId={root_id}", f"/admin/openai/export?userId={root_id}"):
        assert client.get(path, headers=boss).status_code == 404, path
    logs = client.get("/admin/openai/usage", headers=boss).json["data"]
    assert [r["userId"] for r in logs["data"]] == [mate_id]
    exported = client.get("/admin/openai/export?format=ndjson", headers=boss).get_data(as_text=True)
    assert [json.loads(line)["userId"] for line in exported.splitlines()] == [mate_id]
    assert [row["_id"] for row in client.get("/admin/openai/top-users", headers=boss).json["data"]] == [mate_id]
    # Their budget: not capped, not deleted, not listed.
    for method in ("put", "delete", "get"):
        response = getattr(client, method)(f"/admin/openai/budgets/{root_id}", headers=boss,
                                           **({"json": {"tokensPerDay": 1}} if method == "put" else {}))
        assert response.status_code == 404, method
    assert client.put(f"/admin/openai/budgets/{root_id}", json={"tokensPerDay": 10**6},
                      headers=platform).status_code == 200
    assert [b["id"] for b in client.get("/admin/openai/budgets", headers=boss).json["data"]["users"]] == []
    # Their membership: not listed, not moved, not removed.
    members = client.get(f"/admin/orgs/{DEFAULT}/members", headers=boss).json["data"]
    assert root_id not in [m["id"] for m in members["data"]]
    moved = client.post(f"/admin/orgs/{DEFAULT}/members", json={"email": "root@example.com", "role": "member"},
                        headers=boss)
    assert moved.status_code == 404
    assert client.delete(f"/admin/orgs/{DEFAULT}/members/{root_id}", headers=boss).status_code == 404
    # And the platform admin is untouched: their key works, their calls go through.
    assert client.post("/api/test-generation", json=BODY,
                       headers={"Authorization": f"Bearer {root_key['secret']}"}).status_code == 200
    assert client.get(f"/admin/openai/user/{root_id}/history", headers=platform).json["data"]["total"] == 2


def test_an_org_admin_cannot_bind_or_move_a_platform_admin_through_their_team(app, client):
    from tests.orgs.support import make_org, make_team

    root = create_user(app, "root@example.com", role="admin")
    platform = bearer(client, "root@example.com")
    acme = make_org(client, platform, "Acme")
    t2 = make_team(client, platform, acme, "T2")
    join(client, platform, acme, "root@example.com", role="member", team_id=t2)
    create_user(app, "boss@acme.test")
    join(client, platform, acme, "boss@acme.test", role="admin")
    create_user(app, "dev@acme.test")
    join(client, platform, acme, "dev@acme.test", team_id=t2)
    boss = bearer(client, "boss@acme.test")
    key = client.post("/api/keys", json={"name": "root-ci"}, headers=platform).json["data"]["secret"]
    # The org admin caps T2 at 1 token a day: it binds the member, never the platform admin.
    assert client.put(f"/admin/openai/budgets/team/{t2}", json={"tokensPerDay": 1}, headers=boss).status_code == 200
    assert client.post("/api/test-generation", json=BODY, headers=bearer(client, "dev@acme.test")).status_code == 429
    for headers in (platform, {"Authorization": f"Bearer {key}"}):
        assert client.post("/api/test-generation", json=BODY, headers=headers).status_code == 200
    # Nor can the org admin take the platform admin out of the team by deleting it.
    refused = client.delete(f"/admin/orgs/{acme}/teams/{t2}", headers=boss)
    assert refused.status_code == 403 and "platform admin is in this team" in refused.json["message"]
    assert client.get("/auth/me", headers=platform).json["data"]["teamId"] == t2
    # Member counts and per-user series do not give the platform admin away.
    assert client.get(f"/admin/orgs/{acme}", headers=boss).json["data"]["memberCount"] == 2
    assert [t["memberCount"] for t in client.get(f"/admin/orgs/{acme}/teams", headers=boss).json["data"]] == [1]
    series = client.get("/admin/openai/timeseries?groupBy=user", headers=boss).json["data"]["series"]
    assert str(root["_id"]) not in [s["key"] for s in series] and "root@example.com" not in [s["label"] for s in series]
    assert [s["key"] for s in series] == ["other"] and series[0]["totals"]["totalRequests"] == 2
