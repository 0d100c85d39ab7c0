"""An organization admin sees exactly their organization on every admin endpoint; a platform
admin sees all of it and slices it by organization and team. Expected figures are summed here
from the records the test writes."""
import json

import pytest
from bson import ObjectId

from backend.orgs.repository import DEFAULT_ORG_ID
from tests.helpers import bearer, create_user, insert_records, usage_record, utc
from tests.orgs.support import make_org, make_team, member

RANGE = {"startDate": "2026-11-01", "endDate": "2026-11-30"}


@pytest.fixture
def world(app, client, admin_headers):
    """Acme (teams QA and Dev; an org admin), Globex, and the default organization, with calls."""
    root = admin_headers
    acme, globex = make_org(client, root, "Acme"), make_org(client, root, "Globex")
    qa, dev_team = make_team(client, root, acme, "QA"), make_team(client, root, acme, "Dev")
    globex_team = make_team(client, root, globex, "Ops")
    _, owner = member(app, client, root, acme, "owner@acme.test", role="admin")
    a1, _ = member(app, client, root, acme, "a1@acme.test", team_id=qa)
    a2, _ = member(app, client, root, acme, "a2@acme.test")
    g1, _ = member(app, client, root, globex, "g1@globex.test", team_id=globex_team)
    d1 = create_user(app, "d1@default.test")
    records = [
        usage_record(a1, utc(2026, 11, 2, 9), 100, 50, 0.0003, org_id=acme, team_id=qa),
        usage_record(a1, utc(2026, 11, 3, 9), 40, 10, 0.0001, model="gpt-4o", org_id=acme, team_id=qa,
                     outcome="unreadable"),
        usage_record(a2, utc(2026, 11, 3, 10), 7, 3, 0.00002, org_id=acme),
        # Made by a1 before joining Acme: it stays with the default organization.
        usage_record(a1, utc(2026, 11, 1, 8), 1000, 1000, 0.01, org_id=str(DEFAULT_ORG_ID)),
        usage_record(g1, utc(2026, 11, 2, 11), 5000, 2000, 0.05, org_id=globex, team_id=globex_team),
        usage_record(d1, utc(2026, 11, 4, 12), 300, 300, 0.003),
    ]
    insert_records(app, records)
    return {"client": client, "root": root, "owner": owner, "acme": acme, "globex": globex, "qa": qa,
            "dev": dev_team, "globex_team": globex_team, "a1": a1, "a2": a2, "g1": g1, "d1": d1,
            "records": records}


def _sum(records):
    return {"totalTokens": sum(r["totalTokens"] for r in records), "totalRequests": len(records),
            "totalCost": round(sum(r["cost"] for r in records), 10)}


def _of(world, **match):
    """The test's records matching; one written without an organization is the default one's."""
    def value(record, key):
        return record.get(key, DEFAULT_ORG_ID if key == "orgId" else None)

    return [r for r in world["records"] if all(str(value(r, k)) == str(v) for k, v in match.items())]


def _totals(data):
    return {key: data[key] for key in ("totalTokens", "totalRequests", "totalCost")}


def test_an_org_admin_sees_their_organization_on_every_view(world):
    client, owner, acme = world["client"], world["owner"], world["acme"]
    mine = _of(world, orgId=acme)
    get = lambda url, **query: client.get(url, query_string={**RANGE, **query}, headers=owner)  # noqa: E731

    for source in ("rollup", "raw"):
        dashboard = get("/admin/openai/dashboard", source=source).json["data"]
        assert _totals(dashboard) == _sum(mine) and dashboard["uniqueUsers"] == 2
        assert dashboard["failedRequests"] == 1
    top = get("/admin/openai/top-users").json["data"]
    assert [(u["userEmail"], u["totalTokens"]) for u in top] == [("a1@acme.test", 200), ("a2@acme.test", 10)]
    a1_stats = get(f"/admin/openai/user/{world['a1']['_id']}/stats").json["data"]
    assert _totals(a1_stats) == _sum(_of(world, orgId=acme, userId=world["a1"]["_id"]))
    history = get(f"/admin/openai/user/{world['a1']['_id']}/history").json["data"]
    assert history["total"] == 2
    series = get("/admin/openai/timeseries", groupBy="user").json["data"]
    assert {s["label"] for s in series["series"]} == {"a1@acme.test", "a2@acme.test"}
    assert sum(s["totals"]["totalTokens"] for s in series["series"]) == _sum(mine)["totalTokens"]
    models = get("/admin/openai/breakdown", by="model").json["data"]
    assert sum(item["totalTokens"] for item in models) == _sum(mine)["totalTokens"]
    orgs = get("/admin/openai/breakdown", by="org").json["data"]
    assert [(item["key"], item["label"], item["totalTokens"]) for item in orgs] == [(acme, "Acme", 210)]
    teams = get("/admin/openai/breakdown", by="team").json["data"]
    assert [(item["label"], item["totalTokens"]) for item in teams] == [("QA", 200), ("(no team)", 10)]
    logs = get("/admin/openai/usage").json["data"]
    assert logs["total"] == 3 and {r["userEmail"] for r in logs["data"]} == {"a1@acme.test", "a2@acme.test"}
    csv = get("/admin/openai/export").get_data(as_text=True)
    assert len(csv.strip().splitlines()) == 1 + 3 and "globex" not in csv and "d1@" not in csv
    ndjson = [json.loads(line) for line in get("/admin/openai/export", format="ndjson").get_data(as_text=True)
              .splitlines()]
    assert {row["userEmail"] for row in ndjson} == {"a1@acme.test", "a2@acme.test"}


def test_nothing_of_another_organization_is_ever_visible_to_an_org_admin(world):
    client, owner, globex = world["client"], world["owner"], world["globex"]
    g1, d1, globex_team = str(world["g1"]["_id"]), str(world["d1"]["_id"]), world["globex_team"]
    client.put(f"/admin/openai/budgets/{g1}", json={"tokensPerDay": 9}, headers=world["root"])
    client.put(f"/admin/openai/budgets/team/{globex_team}", json={"tokensPerDay": 9}, headers=world["root"])
    client.put(f"/admin/openai/budgets/org/{globex}", json={"tokensPerDay": 9}, headers=world["root"])
    client.get("/admin/openai/dashboard", headers=world["root"])  # a platform admin's request in the audit log

    hidden = [
        f"/admin/openai/user/{g1}/stats", f"/admin/openai/user/{g1}/history", f"/admin/openai/user/{d1}/stats",
        f"/admin/openai/usage?userId={g1}", f"/admin/openai/export?userId={g1}",
        f"/admin/openai/dashboard?orgId={globex}", f"/admin/openai/breakdown?by=model&orgId={globex}",
        f"/admin/openai/timeseries?teamId={globex_team}", f"/admin/openai/top-users?teamId={globex_team}",
        f"/admin/openai/budgets/{g1}", f"/admin/openai/budgets/team/{globex_team}",
        f"/admin/openai/budgets/org/{globex}", f"/admin/orgs/{globex}", f"/admin/orgs/{globex}/members",
    ]
    for url in hidden:
        response = client.get(url, headers=owner)
        assert response.status_code == 404, url
        assert "g1@globex" not in response.get_data(as_text=True)
    assert client.put(f"/admin/openai/budgets/{g1}", json={"tokensPerDay": 1}, headers=owner).status_code == 404
    assert client.get("/admin/openai/reconciliation", headers=owner).status_code == 403

    budgets = client.get("/admin/openai/budgets", headers=owner).json["data"]
    assert (budgets["users"], budgets["teams"], budgets["orgs"]) == ([], [], [])
    audit = client.get("/admin/openai/audit-log", headers=owner).json["data"]
    assert audit["total"] > 0 and {entry["adminEmail"] for entry in audit["data"]} == {"owner@acme.test"}
    visible = [client.get(url, headers=owner).get_data(as_text=True) for url in (
        "/admin/openai/dashboard", "/admin/openai/top-users", "/admin/openai/usage", "/admin/openai/export",
        "/admin/openai/breakdown?by=team", "/admin/openai/breakdown?by=org", "/admin/openai/timeseries?groupBy=user",
        "/admin/openai/budgets", "/admin/orgs")]
    # (The audit log holds the org admin's own requests above, whose paths name those ids.)
    for url, text in zip(("dashboard", "top-users", "usage", "export", "by team", "by org", "timeseries",
                          "budgets", "orgs"), visible):
        assert not [secret for secret in ("globex", g1, globex, d1) if secret in text.lower()], url


def test_a_platform_admin_slices_by_organization_and_team(world):
    client, root = world["client"], world["root"]
    get = lambda url, **query: client.get(url, query_string={**RANGE, **query}, headers=root).json["data"]  # noqa

    everything = _sum(world["records"])
    assert _totals(get("/admin/openai/dashboard")) == everything
    for org in (world["acme"], world["globex"], str(DEFAULT_ORG_ID)):
        for source in ("rollup", "raw"):
            assert _totals(get("/admin/openai/dashboard", orgId=org, source=source)) == _sum(_of(world, orgId=org))
        assert get("/admin/openai/usage", orgId=org)["total"] == len(_of(world, orgId=org))
    assert _totals(get("/admin/openai/dashboard", teamId=world["qa"])) == _sum(_of(world, teamId=world["qa"]))
    assert _totals(get("/admin/openai/dashboard", teamId=world["dev"])) == _sum([])
    assert get("/admin/openai/top-users", orgId=world["globex"])[0]["userEmail"] == "g1@globex.test"

    by_org = {item["label"]: _totals(item) for item in get("/admin/openai/breakdown", by="org")}
    assert by_org == {"Acme": _sum(_of(world, orgId=world["acme"])), "Globex": _sum(_of(world, orgId=world["globex"])),
                      "default": _sum(_of(world, orgId=DEFAULT_ORG_ID))}
    for source in ("rollup", "raw"):
        by_team = {item["key"]: _totals(item) for item in get("/admin/openai/breakdown", by="team", source=source)}
        assert by_team == {world["qa"]: _sum(_of(world, teamId=world["qa"])),
                           world["globex_team"]: _sum(_of(world, teamId=world["globex_team"])),
                           None: _sum(_of(world, teamId=None))}
    unknown = client.get(f"/admin/openai/dashboard?teamId={ObjectId()}", headers=root)
    assert unknown.status_code == 404


def test_calls_are_stamped_with_the_membership_of_the_moment(app, client, admin_headers):
    acme = make_org(client, admin_headers, "Acme")
    qa = make_team(client, admin_headers, acme, "QA")
    create_user(app, "dev@example.com")
    headers = bearer(client, "dev@example.com")
    body = {"prompt": "Login with email and password", "count": 1}
    assert client.post("/api/test-generation", json=body, headers=headers).status_code == 200
    client.post(f"/admin/orgs/{acme}/members", json={"email": "dev@example.com", "role": "member", "teamId": qa},
                headers=admin_headers)
    assert client.post("/api/test-generation", json=body, headers=headers).status_code == 200
    rows = client.get("/admin/openai/usage", headers=admin_headers).json["data"]["data"]
    assert [(row["orgId"], row["teamId"]) for row in rows] == [(acme, qa), (str(DEFAULT_ORG_ID), None)]
