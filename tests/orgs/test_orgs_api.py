"""Organizations, teams and members: who may do what, and what a membership change does."""
from bson import ObjectId

from backend.db import USERS, get_db
from backend.orgs.repository import DEFAULT_ORG_ID
from tests.helpers import PASSWORD, bearer, create_user
from tests.orgs.support import join, make_org, make_team, member

DEFAULT = str(DEFAULT_ORG_ID)


def test_new_and_registered_users_belong_to_the_default_organization(app, client):
    response = client.post("/auth/register", json={"email": "new@example.com", "password": PASSWORD})
    assert response.status_code == 201
    me = client.get("/auth/me", headers=bearer(client, "new@example.com")).json["data"]
    assert (me["orgId"], me["orgRole"], me["teamId"]) == (DEFAULT, "member", None)


def test_platform_admin_creates_lists_renames_organizations(client, admin_headers):
    acme = make_org(client, admin_headers, "  Acme  ")
    listed = client.get("/admin/orgs", headers=admin_headers).json["data"]
    assert [(org["name"], org["memberCount"]) for org in listed] == [("Acme", 0), ("default", 1)]
    renamed = client.patch(f"/admin/orgs/{acme}", json={"name": "Acme Corp"}, headers=admin_headers)
    assert renamed.status_code == 200 and renamed.json["data"]["name"] == "Acme Corp"
    assert client.get(f"/admin/orgs/{acme}", headers=admin_headers).json["data"]["name"] == "Acme Corp"


def test_organization_names_are_unique_case_insensitively_and_validated(client, admin_headers):
    make_org(client, admin_headers, "Acme")
    taken = client.post("/admin/orgs", json={"name": "ACME"}, headers=admin_headers)
    assert taken.status_code == 409 and taken.json["errors"] == {"name": ["Already taken."]}
    other = make_org(client, admin_headers, "Other")
    assert client.patch(f"/admin/orgs/{other}", json={"name": "acme"}, headers=admin_headers).status_code == 409
    for bad in ({}, {"name": ""}, {"name": "   "}, {"name": "x" * 101}, {"name": "a\nb"}, {"name": 5},
                {"name": "ok", "extra": 1}):
        response = client.post("/admin/orgs", json=bad, headers=admin_headers)
        assert response.status_code == 422 and response.json["success"] is False, bad


def test_members_move_between_organizations_and_back_to_default(app, client, admin_headers):
    acme, globex = make_org(client, admin_headers, "Acme"), make_org(client, admin_headers, "Globex")
    qa = make_team(client, admin_headers, acme, "QA")
    user = create_user(app, "dev@example.com")
    joined = join(client, admin_headers, acme, "DEV@example.com", "member", qa)
    assert (joined["id"], joined["orgId"], joined["teamId"], joined["teamName"]) == (str(user["_id"]), acme, qa, "QA")

    # Same organization again without teamId keeps the team; a new role is taken.
    again = join(client, admin_headers, acme, "dev@example.com", "admin")
    assert (again["orgRole"], again["teamId"]) == ("admin", qa)
    # Moving to another organization leaves the old team behind.
    moved = join(client, admin_headers, globex, "dev@example.com")
    assert (moved["orgId"], moved["orgRole"], moved["teamId"]) == (globex, "member", None)
    assert client.get(f"/admin/orgs/{acme}/members", headers=admin_headers).json["data"]["total"] == 0
    page = client.get(f"/admin/orgs/{globex}/members", headers=admin_headers).json["data"]
    assert [m["email"] for m in page["data"]] == ["dev@example.com"] and page["total"] == 1

    removed = client.delete(f"/admin/orgs/{globex}/members/{user['_id']}", headers=admin_headers)
    assert removed.status_code == 200
    with app.app_context():
        stored = get_db()[USERS].find_one({"_id": user["_id"]})
    assert (stored["orgId"], stored["orgRole"], stored["teamId"]) == (DEFAULT_ORG_ID, "member", None)
    leave_default = client.delete(f"/admin/orgs/{DEFAULT}/members/{user['_id']}", headers=admin_headers)
    assert leave_default.status_code == 409
    assert client.delete(f"/admin/orgs/{globex}/members/{user['_id']}", headers=admin_headers).status_code == 404


def test_a_team_must_belong_to_the_organization(app, client, admin_headers):
    acme, globex = make_org(client, admin_headers, "Acme"), make_org(client, admin_headers, "Globex")
    globex_team = make_team(client, admin_headers, globex, "Ops")
    create_user(app, "dev@example.com")
    for team in (globex_team, str(ObjectId())):
        response = client.post(f"/admin/orgs/{acme}/members", json={"email": "dev@example.com", "role": "member",
                                                                    "teamId": team}, headers=admin_headers)
        assert response.status_code == 404
    bad = client.post(f"/admin/orgs/{acme}/members", json={"email": "dev@example.com", "role": "owner",
                                                           "teamId": "nope"}, headers=admin_headers)
    assert bad.status_code == 422 and set(bad.json["errors"]) == {"role", "teamId"}
    unknown = client.post(f"/admin/orgs/{acme}/members", json={"email": "ghost@example.com", "role": "member"},
                          headers=admin_headers)
    assert unknown.status_code == 404


def test_teams_are_unique_per_organization_and_deleting_one_frees_its_members(app, client, admin_headers):
    acme, globex = make_org(client, admin_headers, "Acme"), make_org(client, admin_headers, "Globex")
    qa = make_team(client, admin_headers, acme, "QA")
    make_team(client, admin_headers, globex, "QA")  # the same name in another organization is fine
    duplicate = client.post(f"/admin/orgs/{acme}/teams", json={"name": "qa"}, headers=admin_headers)
    assert duplicate.status_code == 409
    user, _ = member(app, client, admin_headers, acme, "dev@example.com", team_id=qa)
    client.put(f"/admin/openai/budgets/team/{qa}", json={"tokensPerDay": 100}, headers=admin_headers)
    teams = client.get(f"/admin/orgs/{acme}/teams", headers=admin_headers).json["data"]
    assert [(t["name"], t["memberCount"]) for t in teams] == [("QA", 1)]

    assert client.delete(f"/admin/orgs/{globex}/teams/{qa}", headers=admin_headers).status_code == 404
    assert client.delete(f"/admin/orgs/{acme}/teams/{qa}", headers=admin_headers).status_code == 200
    assert client.get(f"/admin/orgs/{acme}/teams", headers=admin_headers).json["data"] == []
    with app.app_context():
        assert get_db()[USERS].find_one({"_id": user["_id"]})["teamId"] is None
    assert client.get(f"/admin/openai/budgets/team/{qa}", headers=admin_headers).status_code == 404


def test_an_organization_admin_manages_only_their_own_organization(app, client, admin_headers):
    acme, globex = make_org(client, admin_headers, "Acme"), make_org(client, admin_headers, "Globex")
    _, owner = member(app, client, admin_headers, acme, "owner@example.com", role="admin")
    member(app, client, admin_headers, acme, "dev@example.com")
    member(app, client, admin_headers, globex, "spy@example.com")
    create_user(app, "loose@example.com")

    assert [o["name"] for o in client.get("/admin/orgs", headers=owner).json["data"]] == ["Acme"]
    assert client.get(f"/admin/orgs/{globex}", headers=owner).status_code == 404
    assert client.get(f"/admin/orgs/{globex}/members", headers=owner).status_code == 404
    assert client.get(f"/admin/orgs/{globex}/teams", headers=owner).status_code == 404
    assert client.post(f"/admin/orgs/{globex}/teams", json={"name": "X"}, headers=owner).status_code == 404
    # Creating and renaming organizations is the platform's.
    assert client.post("/admin/orgs", json={"name": "Mine"}, headers=owner).status_code == 403
    assert client.patch(f"/admin/orgs/{acme}", json={"name": "Mine"}, headers=owner).status_code == 403

    # Their own: teams and members, but no pulling users in from elsewhere.
    qa = make_team(client, owner, acme, "QA")
    assert join(client, owner, acme, "dev@example.com", team_id=qa)["teamName"] == "QA"
    for outsider in ("spy@example.com", "loose@example.com"):
        response = client.post(f"/admin/orgs/{acme}/members", json={"email": outsider, "role": "member"},
                               headers=owner)
        assert response.status_code == 404
    emails = [m["email"] for m in client.get(f"/admin/orgs/{acme}/members", headers=owner).json["data"]["data"]]
    assert emails == ["dev@example.com", "owner@example.com"]


def test_members_and_users_are_no_admins(app, client, admin_headers):
    acme = make_org(client, admin_headers, "Acme")
    _, dev = member(app, client, admin_headers, acme, "dev@example.com")
    for method, url in (("get", "/admin/orgs"), ("get", f"/admin/orgs/{acme}/members"),
                        ("post", f"/admin/orgs/{acme}/teams"), ("get", "/admin/openai/dashboard")):
        response = getattr(client, method)(url, headers=dev, json={"name": "x"} if method == "post" else None)
        assert response.status_code == 403, url
    assert client.get("/admin/orgs").status_code == 401


def test_invalid_ids_are_400s(client, admin_headers):
    assert client.get("/admin/orgs/nope", headers=admin_headers).status_code == 400
    assert client.get(f"/admin/orgs/{ObjectId()}", headers=admin_headers).status_code == 404
    assert client.delete(f"/admin/orgs/{DEFAULT}/teams/zzz", headers=admin_headers).status_code == 400
