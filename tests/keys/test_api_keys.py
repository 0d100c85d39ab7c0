"""API keys: a secret shown once and stored as a hash; accepted on user endpoints, never on
admin ones; revoked at once; a key acts as its owner, as a plain user, inside the owner's current
membership (their organization and team at each call)."""
import hashlib
from datetime import datetime, timedelta, timezone

from bson import ObjectId

from backend.db import API_KEYS, BUDGET_COUNTERS, USAGE, get_db
from tests.budgets.support import generate, with_platform_admin
from tests.helpers import bearer, create_user
from tests.orgs.support import make_org, make_team, member

BODY = {"prompt": "Login with email and password", "count": 1}


def _key(client, headers, **body):
    response = client.post("/api/keys", json={"name": "ci", **body}, headers=headers)
    assert response.status_code == 201, response.json
    return response.json["data"]


def _with(secret):
    return {"Authorization": f"Bearer {secret}"}


def _stored_everywhere(app):
    """Every document of every collection, as text."""
    with app.app_context():
        db = get_db()
        return " ".join(str(doc) for name in db.list_collection_names() for doc in db[name].find())


def test_the_secret_is_shown_once_and_only_its_hash_is_stored(app, client, user_headers):
    key = _key(client, user_headers)
    secret = key["secret"]
    assert secret.startswith("tl_") and len(secret) >= 40 and key["prefix"] == secret[:11]
    listed = client.get("/api/keys", headers=user_headers).json["data"]
    assert [k["id"] for k in listed] == [key["id"]] and "secret" not in listed[0]
    assert secret not in client.get("/api/keys", headers=user_headers).get_data(as_text=True)
    with app.app_context():
        stored = get_db()[API_KEYS].find_one()
    assert stored["hash"] == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in _stored_everywhere(app)
    # The key works, and using it does not store it either.
    assert client.post("/api/test-generation", json=BODY, headers=_with(secret)).status_code == 200
    assert secret not in _stored_everywhere(app)


def test_a_key_works_on_user_endpoints_and_its_calls_are_attributed(app, client, admin_headers):
    acme = make_org(client, admin_headers, "Acme")
    qa = make_team(client, admin_headers, acme, "QA")
    owner, owner_headers = member(app, client, admin_headers, acme, "dev@acme.test", team_id=qa)
    key = _key(client, owner_headers)
    assert (key["orgId"], key["teamId"], key["userId"]) == (acme, qa, str(owner["_id"]))
    headers = _with(key["secret"])

    assert client.post("/api/test-generation", json=BODY, headers=headers).status_code == 200
    assert client.post("/api/testcases/generate-and-save-with-ai", json=BODY, headers=headers).status_code == 201
    assert client.post("/api/estimate-tokens", json=BODY, headers=headers).status_code == 200
    assert client.get("/api/token-info", headers=headers).status_code == 200
    assert client.get("/api/testcases", headers=headers).json["data"]["total"] == 1
    assert client.get("/api/me/usage", headers=headers).status_code == 200
    with app.app_context():
        records = list(get_db()[USAGE].find())
    assert [(r["userId"], str(r["orgId"]), str(r["teamId"]), str(r["apiKeyId"])) for r in records] == [
        (owner["_id"], acme, qa, key["id"])] * 2
    listed = client.get("/api/keys", headers=owner_headers).json["data"][0]
    assert listed["lastUsedAt"] is not None


def test_a_key_is_refused_on_admin_endpoints_and_cannot_manage_keys(app, client, admin_headers):
    key = _key(client, admin_headers)  # even an admin's key
    headers = _with(key["secret"])
    for url in ("/admin/openai/dashboard", "/admin/orgs", "/admin/openai/budgets", "/admin/openai/audit-log"):
        response = client.get(url, headers=headers)
        assert response.status_code == 403 and "API keys are not accepted" in response.json["message"], url
    for refused in (client.get("/api/keys", headers=headers), client.get("/auth/me", headers=headers),
                    client.post("/api/keys", json={"name": "more"}, headers=headers)):
        assert refused.status_code == 401 and refused.json["message"].startswith("API keys are not accepted here")


def test_a_revoked_or_expired_or_unknown_key_is_refused_at_once(app, client, user_headers):
    key = _key(client, user_headers)
    headers = _with(key["secret"])
    assert client.post("/api/estimate-tokens", json=BODY, headers=headers).status_code == 200
    assert client.delete(f"/api/keys/{key['id']}", headers=user_headers).status_code == 200
    refused = client.post("/api/estimate-tokens", json=BODY, headers=headers)
    assert refused.status_code == 401 and refused.json == {"success": False,
                                                          "message": "Invalid, revoked or expired API key"}
    assert client.get("/api/keys", headers=user_headers).json["data"] == []
    assert client.delete(f"/api/keys/{key['id']}", headers=user_headers).status_code == 404
    for secret in ("tl_" + "x" * 43, "tl_", "tl_\u00e9\ud800"[:5]):
        assert client.get("/api/token-info", headers=_with(secret)).status_code == 401

    soon = _key(client, user_headers, expiresAt=(datetime.now(timezone.utc) + timedelta(hours=1)).isoformat())
    with app.app_context():
        get_db()[API_KEYS].update_one({"_id": ObjectId(soon["id"])},
                                      {"$set": {"expiresAt": datetime.now(timezone.utc) - timedelta(seconds=1)}})
    assert client.get("/api/token-info", headers=_with(soon["secret"])).status_code == 401


def test_key_input_is_validated(client, user_headers):
    for body in ({}, {"name": ""}, {"name": "x" * 101}, {"name": "ci", "expiresAt": "tomorrow"},
                 {"name": "ci", "expiresAt": "2020-01-01T00:00:00Z"}, {"name": "ci", "teamId": "nope"},
                 {"name": "ci", "extra": True}):
        response = client.post("/api/keys", json=body, headers=user_headers)
        assert response.status_code == 422 and response.json["success"] is False, body
    assert client.delete("/api/keys/nope", headers=user_headers).status_code == 400
    # Without a time zone an expiry is UTC: a date is its midnight UTC.
    next_year = datetime.now(timezone.utc).year + 1
    for given in (f"{next_year}-01-01", f"{next_year}-01-01T00:00:00"):
        response = client.post("/api/keys", json={"name": "ci", "expiresAt": given}, headers=user_headers)
        assert response.status_code == 201 and response.json["data"]["expiresAt"] == f"{next_year}-01-01T00:00:00.000Z"
    past = client.post("/api/keys", json={"name": "ci", "expiresAt": "2020-01-01"}, headers=user_headers)
    assert past.status_code == 422


def test_members_manage_their_own_keys_and_org_admins_the_organizations(app, client, admin_headers):
    acme, globex = make_org(client, admin_headers, "Acme"), make_org(client, admin_headers, "Globex")
    qa = make_team(client, admin_headers, acme, "QA")
    ops = make_team(client, admin_headers, globex, "Ops")
    _, dev = member(app, client, admin_headers, acme, "dev@acme.test")
    _, other = member(app, client, admin_headers, acme, "other@acme.test")
    _, owner = member(app, client, admin_headers, acme, "owner@acme.test", role="admin")
    _, spy = member(app, client, admin_headers, globex, "spy@globex.test", role="admin")
    dev_key, other_key = _key(client, dev), _key(client, other)
    spy_key = _key(client, spy)

    assert [k["id"] for k in client.get("/api/keys", headers=dev).json["data"]] == [dev_key["id"]]
    assert client.delete(f"/api/keys/{other_key['id']}", headers=dev).status_code == 404
    assert {k["id"] for k in client.get("/api/keys", headers=owner).json["data"]} == {dev_key["id"],
                                                                                      other_key["id"]}
    assert client.delete(f"/api/keys/{spy_key['id']}", headers=owner).status_code == 404
    assert client.delete(f"/api/keys/{other_key['id']}", headers=owner).status_code == 200
    assert len(client.get("/api/keys", headers=admin_headers).json["data"]) == 2
    # A key acts in its owner's team: nobody, admin or not, makes one for another team or for none.
    for headers, team in ((dev, qa), (owner, qa), (owner, ops)):
        refused = client.post("/api/keys", json={"name": "x", "teamId": team}, headers=headers)
        assert refused.status_code == 422 and refused.json["errors"] == {"teamId": ["Must be your own team, or absent."]}
    assert _key(client, dev, teamId=None)["teamId"] is None
    _, tester = member(app, client, admin_headers, acme, "tester@acme.test", team_id=qa)
    outside = client.post("/api/keys", json={"name": "x", "teamId": None}, headers=tester)
    assert outside.status_code == 422 and "owner's current team" in outside.json["message"]
    assert _key(client, tester)["teamId"] == _key(client, tester, teamId=qa)["teamId"] == qa
    assert _key(client, owner, teamId=None)["teamId"] is None


def test_a_keys_deleted_team_is_no_longer_its_team(app, client, admin_headers):
    acme = make_org(client, admin_headers, "Acme")
    qa, ops = make_team(client, admin_headers, acme, "QA"), make_team(client, admin_headers, acme, "Ops")
    _, qa_headers = member(app, client, admin_headers, acme, "qa@acme.test", team_id=qa)
    _, ops_headers = member(app, client, admin_headers, acme, "ops@acme.test", team_id=ops)
    deleted, raced = _key(client, qa_headers), _key(client, ops_headers)
    assert client.delete(f"/admin/orgs/{acme}/teams/{qa}", headers=admin_headers).status_code == 200
    assert [k["teamId"] for k in client.get("/api/keys", headers=qa_headers).json["data"]] == [None]
    # A team removed behind the key's back (as if deleted between reading the key and its use).
    with app.app_context():
        get_db()["teams"].delete_one({"_id": ObjectId(ops)})
    for key in (deleted, raced):
        assert client.post("/api/test-generation", json=BODY, headers=_with(key["secret"])).status_code == 200
    with app.app_context():
        records = list(get_db()[USAGE].find({}, {"teamId": 1, "apiKeyId": 1}))
    assert sorted((str(r["apiKeyId"]), r["teamId"]) for r in records) == sorted(
        [(deleted["id"], None), (raced["id"], None)])


def test_a_key_stops_working_when_its_owner_leaves_the_organization_and_stays_revoked(app, client,
                                                                                      admin_headers):
    acme = make_org(client, admin_headers, "Acme")
    user, headers = member(app, client, admin_headers, acme, "dev@acme.test")
    key = _key(client, headers)
    client.delete(f"/admin/orgs/{acme}/members/{user['_id']}", headers=admin_headers)
    refused = client.get("/api/token-info", headers=_with(key["secret"]))
    assert refused.status_code == 401 and "left its organization" in refused.json["message"]
    # Added back, the owner needs a new key: the old one was revoked for good.
    client.post(f"/admin/orgs/{acme}/members", json={"email": "dev@acme.test", "role": "member"},
                headers=admin_headers)
    again = client.get("/api/token-info", headers=_with(key["secret"]))
    assert again.status_code == 401 and "left its organization" in again.json["message"]
    assert client.get("/api/token-info", headers=_with(_key(client, headers)["secret"])).status_code == 200


def test_a_key_of_an_owner_whose_account_is_disabled_is_revoked_for_good(app, client, user_headers):
    key = _key(client, user_headers)
    with app.app_context():
        get_db()["users"].update_one({"email": "user@example.com"}, {"$set": {"isActive": False}})
    assert client.get("/api/token-info", headers=_with(key["secret"])).status_code == 401
    with app.app_context():
        get_db()["users"].update_one({"email": "user@example.com"}, {"$set": {"isActive": True}})
    refused = client.get("/api/token-info", headers=_with(key["secret"]))
    assert refused.status_code == 401 and "no longer exists or is disabled" in refused.json["message"]


def test_a_key_follows_its_owner_into_another_team_and_its_budget(make_app):
    app, client, root, calls, per_request = with_platform_admin(make_app)
    acme = make_org(client, root, "Acme")
    t1, t2 = make_team(client, root, acme, "T1"), make_team(client, root, acme, "T2")
    dev, dev_headers = member(app, client, root, acme, "dev@acme.test", team_id=t1)
    boss, boss_headers = member(app, client, root, acme, "boss@acme.test", role="admin")
    dev_key, boss_key = _key(client, dev_headers), _key(client, boss_headers, teamId=None)
    # The member moves to T2 and the org admin is demoted into T2, whose budget is 10 tokens a day.
    for email, role in (("dev@acme.test", "member"), ("boss@acme.test", "member")):
        client.post(f"/admin/orgs/{acme}/members", json={"email": email, "role": role, "teamId": t2}, headers=root)
    assert client.put(f"/admin/openai/budgets/team/{t2}", json={"tokensPerDay": 10}, headers=root).status_code == 200
    for headers in (dev_headers, boss_headers, _with(dev_key["secret"]), _with(boss_key["secret"])):
        refused = generate(client, headers)
        assert refused.status_code == 429 and refused.json["data"]["scope"] == "team"
    assert calls == []
    listed = {k["id"]: k["teamId"] for k in client.get("/api/keys", headers=root).json["data"]}
    assert listed == {dev_key["id"]: t2, boss_key["id"]: t2}
    # Without the budget, the key's calls are recorded in T2, the team its owner is in.
    client.delete(f"/admin/openai/budgets/team/{t2}", headers=root)
    assert generate(client, _with(dev_key["secret"])).status_code == 200
    with app.app_context():
        [record] = get_db()[USAGE].find()
    assert (str(record["teamId"]), str(record["apiKeyId"])) == (t2, dev_key["id"])


def test_a_keys_budget_binds_its_calls_and_its_owners_budget_binds_the_key(make_app):
    app, client, root, calls, per_request = with_platform_admin(make_app)
    user = create_user(app, "dev@example.com")
    headers = bearer(client, "dev@example.com")
    key = _key(client, headers)
    assert client.put(f"/admin/openai/budgets/key/{key['id']}", json={"tokensPerDay": per_request},
                      headers=root).status_code == 200

    assert generate(client, _with(key["secret"])).status_code == 200
    refused = generate(client, _with(key["secret"]))
    assert refused.status_code == 429 and refused.json["data"]["scope"] == "key"
    assert generate(client, headers).status_code == 200  # the owner, without the key, is not bound by it
    today = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    with app.app_context():
        counters = {doc["_id"]: doc["tokens"] for doc in get_db()[BUDGET_COUNTERS].find()}
    assert counters[f"key:{key['id']}|day|{today}"] == per_request
    assert counters[f"{user['_id']}|day|{today}"] == 2 * per_request

    client.put(f"/admin/openai/budgets/{user['_id']}", json={"tokensPerDay": 2 * per_request}, headers=root)
    client.delete(f"/admin/openai/budgets/key/{key['id']}", headers=root)
    owner_refusal = generate(client, _with(key["secret"]))
    assert owner_refusal.status_code == 429 and owner_refusal.json["data"]["scope"] == "user"
    assert len(calls) == 2


def test_a_key_shares_its_owners_rate_limit(make_app):
    app = make_app(RATELIMIT_ENABLED=True, RATELIMIT_GENERATION="2 per minute")
    client = app.test_client()
    create_user(app, "dev@example.com")
    headers = bearer(client, "dev@example.com")
    key = _key(client, headers)
    assert client.post("/api/test-generation", json=BODY, headers=headers).status_code == 200
    assert client.post("/api/test-generation", json=BODY, headers=_with(key["secret"])).status_code == 200
    assert client.post("/api/test-generation", json=BODY, headers=_with(key["secret"])).status_code == 429
