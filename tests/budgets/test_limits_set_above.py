"""Limits set above you bind you: a platform admin's limits are a ceiling an organization admin
may tighten but never loosen or remove, and nobody below the platform changes their own budget."""
from tests.budgets.support import generate, with_platform_admin
from tests.orgs.support import make_org, make_team, member


def test_an_org_admin_cannot_loosen_or_remove_what_a_platform_admin_set(make_app):
    app, client, root, calls, per_request = with_platform_admin(make_app)
    acme = make_org(client, root, "Acme")
    qa = make_team(client, root, acme, "QA")
    boss, boss_headers = member(app, client, root, acme, "boss@acme.test", role="admin")
    dev, _ = member(app, client, root, acme, "dev@acme.test", team_id=qa)
    own = f"/admin/openai/budgets/{boss['_id']}"

    # The platform admin caps the org admin at 1 token a day: the org admin can neither raise nor
    # delete it, and stays capped.
    assert client.put(own, json={"tokensPerDay": 1}, headers=root).status_code == 200
    for response in (client.put(own, json={"tokensPerDay": 10**15}, headers=boss_headers),
                     client.delete(own, headers=boss_headers)):
        assert response.status_code == 403 and "own budget" in response.json["message"]
    refused = generate(client, boss_headers)
    assert refused.status_code == 429 and refused.json["data"]["scope"] == "user"

    # A team budget the platform admin set: tightened by the org admin, never loosened past it or removed.
    team = f"/admin/openai/budgets/team/{qa}"
    assert client.put(team, json={"tokensPerDay": 5000, "usdPerMonth": 2.0}, headers=root).status_code == 200
    loosen = client.put(team, json={"tokensPerDay": 6000, "usdPerMonth": 2.0}, headers=boss_headers)
    assert loosen.status_code == 403 and "tokensPerDay" in loosen.json["message"]
    dropped = client.put(team, json={"tokensPerDay": 5000}, headers=boss_headers)
    assert dropped.status_code == 403 and "usdPerMonth" in dropped.json["message"]
    tightened = client.put(team, json={"tokensPerDay": 4000, "usdPerMonth": 1.5}, headers=boss_headers)
    assert tightened.status_code == 200
    assert (tightened.json["data"]["setBy"], tightened.json["data"]["ceiling"]) == (
        "organization", {"tokensPerDay": 5000, "usdPerMonth": 2.0})
    # Back up to the ceiling is allowed, past it is not, even after the org admin's own change.
    assert client.put(team, json={"tokensPerDay": 5000, "usdPerMonth": 2.0}, headers=boss_headers).status_code == 200
    assert client.put(team, json={"tokensPerDay": 5001, "usdPerMonth": 2.0}, headers=boss_headers).status_code == 403
    assert client.delete(team, headers=boss_headers).status_code == 403
    assert client.delete(team, headers=root).status_code == 200

    # A budget an org admin set themselves (no ceiling) is theirs to change; the list says who set what.
    assert client.put(team, json={"tokensPerDay": 100}, headers=boss_headers).status_code == 200
    assert client.put(team, json={"tokensPerDay": 200}, headers=boss_headers).status_code == 200
    listed = client.get("/admin/openai/budgets", headers=boss_headers).json["data"]
    assert [(b["teamId"], b["setBy"], b["ceiling"]) for b in listed["teams"]] == [(qa, "organization", None)]
    assert [(b["userId"], b["setBy"], b["ceiling"]) for b in listed["users"]] == [
        (str(boss["_id"]), "platform", {"tokensPerDay": 1})]
    assert client.delete(team, headers=boss_headers).status_code == 200
    assert calls == []
    assert dev is not None


def test_an_org_admin_never_changes_their_own_budget_nor_their_keys(app, client, admin_headers):
    acme = make_org(client, admin_headers, "Acme")
    boss, boss_headers = member(app, client, admin_headers, acme, "boss@acme.test", role="admin")
    key = client.post("/api/keys", json={"name": "ci"}, headers=boss_headers).json["data"]
    for path in (f"/admin/openai/budgets/{boss['_id']}", f"/admin/openai/budgets/key/{key['id']}"):
        put = client.put(path, json={"tokensPerDay": 10**15}, headers=boss_headers)
        assert put.status_code == 403 and "own budget" in put.json["message"], path
        assert client.put(path, json={"tokensPerDay": 10}, headers=admin_headers).status_code == 200
        assert client.delete(path, headers=boss_headers).status_code == 403


def test_a_platform_ceiling_survives_the_org_admin_deleting_the_team_or_moving_out(make_app):
    app, client, root, calls, per_request = with_platform_admin(make_app)
    acme = make_org(client, root, "Acme")
    capped = make_team(client, root, acme, "Capped")
    boss, boss_headers = member(app, client, root, acme, "boss@acme.test", role="admin", team_id=capped)
    assert client.put(f"/admin/openai/budgets/team/{capped}", json={"tokensPerDay": 10}, headers=root).status_code == 200
    assert generate(client, boss_headers).status_code == 429
    deleted = client.delete(f"/admin/orgs/{acme}/teams/{capped}", headers=boss_headers)
    assert deleted.status_code == 403 and "only a platform admin deletes the team" in deleted.json["message"]
    free = make_team(client, boss_headers, acme, "Free")
    moved = client.post(f"/admin/orgs/{acme}/members", json={"email": "boss@acme.test", "role": "admin",
                                                            "teamId": free}, headers=boss_headers)
    assert moved.status_code == 403 and "their own membership" in moved.json["message"]
    assert generate(client, boss_headers).status_code == 429 and calls == []


def test_the_budgets_of_revoked_keys_are_not_listed(app, client, admin_headers):
    acme = make_org(client, admin_headers, "Acme")
    _, dev = member(app, client, admin_headers, acme, "dev@acme.test")
    _, boss = member(app, client, admin_headers, acme, "boss@acme.test", role="admin")
    key = client.post("/api/keys", json={"name": "ci"}, headers=dev).json["data"]
    assert client.put(f"/admin/openai/budgets/key/{key['id']}", json={"tokensPerDay": 5}, headers=boss).status_code == 200
    assert [b["apiKeyId"] for b in client.get("/admin/openai/budgets", headers=boss).json["data"]["keys"]] == [key["id"]]
    client.delete(f"/api/keys/{key['id']}", headers=dev)
    assert client.get("/admin/openai/budgets", headers=boss).json["data"]["keys"] == []
