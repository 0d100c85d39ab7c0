"""Team and organization budgets: one request reserves on its user's, team's and organization's
counters all or nothing; every counter equals the ledger for its window."""
from datetime import datetime, timezone

import mongomock
from bson import ObjectId

from backend.db import ALERTS, BUDGET_COUNTERS, USAGE, get_db
from tests.budgets.support import (
    MAX_OUTPUT,
    build,
    generate,
    provider_reporting,
    raced,
    worst_case_tokens,
)
from tests.helpers import bearer, create_user
from tests.orgs.support import make_org, make_team, member

TODAY = datetime.now(timezone.utc).strftime("%Y-%m-%d")


def _counter(app, owner):
    with app.app_context():
        return get_db()[BUDGET_COUNTERS].find_one({"_id": f"{owner}|day|{TODAY}"}) or {"tokens": 0}


def _ledger_tokens(app, **query):
    with app.app_context():
        return sum(record["totalTokens"] for record in get_db()[USAGE].find(query))


def _setup(make_app, transport, store=None, instances=1):
    store = store or mongomock.MongoClient(tz_aware=True)
    apps = [build(make_app, transport, store) for _ in range(instances)]
    app = apps[0]
    client = app.test_client()
    create_user(app, "root@example.com", role="admin")
    root = bearer(client, "root@example.com")
    acme = make_org(client, root, "Acme")
    return apps, client, root, acme


def test_an_org_budget_shared_by_several_users_never_overshoots(make_app):
    per_request = worst_case_tokens()
    transport, provider_calls = provider_reporting(per_request - MAX_OUTPUT)
    apps, client, root, acme = _setup(make_app, transport, instances=2)
    qa = make_team(client, root, acme, "QA")
    headers = [member(apps[0], client, root, acme, f"dev{n}@acme.test", team_id=qa if n % 2 else None)[1]
               for n in range(3)]
    # Room for 7 worst cases, one token short of 8, for the whole organization.
    limit = 8 * per_request - 1
    assert client.put(f"/admin/openai/budgets/org/{acme}", json={"tokensPerDay": limit},
                      headers=root).status_code == 200

    def one_request(number):
        return generate(apps[number % 2].test_client(), headers[number % 3])

    responses = raced(one_request, 50)

    statuses = [r.status_code for r in responses]
    assert statuses.count(200) == 7 and statuses.count(429) == 43 and len(provider_calls) == 7
    refused = next(r for r in responses if r.status_code == 429)
    assert refused.json["data"]["scope"] == "org" and "your organization's day budget" in refused.json["message"]
    app = apps[0]
    with app.app_context():
        org_id = get_db()[USAGE].find_one()["orgId"]
    assert _ledger_tokens(app) == 7 * per_request
    # Every counter equals the ledger for its window: the organization's, the team's, each user's.
    assert _counter(app, f"org:{acme}")["tokens"] == _ledger_tokens(app, orgId=org_id) == 7 * per_request
    assert _counter(app, f"team:{qa}")["tokens"] == _ledger_tokens(app, teamId=ObjectId(qa))
    with app.app_context():
        for user in get_db()["users"].find({"orgId": org_id}):
            assert _counter(app, user["_id"])["tokens"] == _ledger_tokens(app, userId=user["_id"])


def test_a_team_budget_binds_its_members_only_and_a_refusal_holds_nothing(make_app):
    per_request = worst_case_tokens()
    transport, provider_calls = provider_reporting(per_request - MAX_OUTPUT)
    apps, client, root, acme = _setup(make_app, transport)
    app = apps[0]
    qa, dev = make_team(client, root, acme, "QA"), make_team(client, root, acme, "Dev")
    tester, tester_headers = member(app, client, root, acme, "tester@acme.test", team_id=qa)
    _, coder_headers = member(app, client, root, acme, "coder@acme.test", team_id=dev)
    client.put(f"/admin/openai/budgets/team/{qa}", json={"tokensPerDay": per_request}, headers=root)
    client.put(f"/admin/openai/budgets/org/{acme}", json={"tokensPerDay": 100 * per_request}, headers=root)

    assert generate(client, tester_headers).status_code == 200
    refused = generate(client, tester_headers)
    assert refused.status_code == 429 and refused.json["data"]["scope"] == "team"
    assert refused.json["data"]["used"] == per_request
    assert generate(client, coder_headers).status_code == 200
    assert len(provider_calls) == 2
    # The refused request reserved on the organization first and gave it back.
    assert _counter(app, f"org:{acme}")["tokens"] == 2 * per_request
    assert _counter(app, tester["_id"])["tokens"] == per_request


def test_a_user_budget_refusal_gives_back_what_it_held_on_team_and_org(make_app):
    per_request = worst_case_tokens()
    transport, _ = provider_reporting(per_request - MAX_OUTPUT)
    apps, client, root, acme = _setup(make_app, transport)
    app = apps[0]
    qa = make_team(client, root, acme, "QA")
    user, headers = member(app, client, root, acme, "dev@acme.test", team_id=qa)
    client.put(f"/admin/openai/budgets/team/{qa}", json={"tokensPerDay": 10 * per_request}, headers=root)
    client.put(f"/admin/openai/budgets/org/{acme}", json={"tokensPerDay": 10 * per_request}, headers=root)
    client.put(f"/admin/openai/budgets/{user['_id']}", json={"tokensPerDay": per_request - 1}, headers=root)

    refused = generate(client, headers)
    assert refused.status_code == 429 and refused.json["data"]["scope"] == "user"
    assert _counter(app, f"team:{qa}")["tokens"] == 0 and _counter(app, f"org:{acme}")["tokens"] == 0


def test_alerts_name_the_team_and_the_organization(make_app):
    per_request = worst_case_tokens()
    transport, _ = provider_reporting(per_request - MAX_OUTPUT)
    apps, client, root, acme = _setup(make_app, transport)
    app = apps[0]
    qa = make_team(client, root, acme, "QA")
    _, headers = member(app, client, root, acme, "dev@acme.test", team_id=qa)
    client.put(f"/admin/openai/budgets/team/{qa}", json={"tokensPerDay": per_request}, headers=root)
    client.put(f"/admin/openai/budgets/org/{acme}", json={"tokensPerDay": 2 * per_request}, headers=root)

    assert generate(client, headers).status_code == 200
    with app.app_context():
        alerts = {alert["_id"]: alert["payload"] for alert in get_db()[ALERTS].find()}
    # The team is at 100% of its budget, the organization at 50% of its: no alert for it yet.
    assert sorted(alerts) == [f"team:{qa}|day|{TODAY}|tokens|100", f"team:{qa}|day|{TODAY}|tokens|80"]
    team_alert = alerts[f"team:{qa}|day|{TODAY}|tokens|100"]
    assert team_alert["alert"]["label"] == "Team QA (Acme)"
    assert team_alert["text"].startswith("TokenLedger: Team QA (Acme) has used 100% of its day tokens budget")

    assert generate(client, headers).status_code == 429  # the team's budget is spent
    client.put(f"/admin/openai/budgets/team/{qa}", json={"tokensPerDay": 10 * per_request}, headers=root)
    assert generate(client, headers).status_code == 200
    with app.app_context():
        org_alerts = [a["payload"]["alert"] for a in get_db()[ALERTS].find({"_id": {"$regex": "^org:"}})]
    assert [(a["label"], a["threshold"]) for a in org_alerts] == [("Organization Acme", 80), ("Organization Acme", 100)]


def test_who_may_set_which_budget(make_app):
    transport, _ = provider_reporting(10)
    apps, client, root, acme = _setup(make_app, transport)
    app = apps[0]
    globex = make_org(client, root, "Globex")
    qa = make_team(client, root, acme, "QA")
    _, owner = member(app, client, root, acme, "owner@acme.test", role="admin")
    dev, _ = member(app, client, root, acme, "dev@acme.test")
    limits = {"tokensPerDay": 1000}

    assert client.put(f"/admin/openai/budgets/team/{qa}", json=limits, headers=owner).status_code == 200
    assert client.put(f"/admin/openai/budgets/{dev['_id']}", json=limits, headers=owner).status_code == 200
    assert client.put(f"/admin/openai/budgets/org/{acme}", json=limits, headers=owner).status_code == 403
    assert client.put("/admin/openai/budgets/default", json=limits, headers=owner).status_code == 403
    assert client.put(f"/admin/openai/budgets/org/{globex}", json=limits, headers=root).status_code == 200
    assert client.get(f"/admin/openai/budgets/org/{globex}", headers=owner).status_code == 404
    assert client.put(f"/admin/openai/budgets/org/{acme}", json=limits, headers=root).status_code == 200
    org_budget = client.get(f"/admin/openai/budgets/org/{acme}", headers=owner).json["data"]
    assert (org_budget["scope"], org_budget["orgId"], org_budget["userId"], org_budget["tokensPerDay"]) == (
        "org", acme, None, 1000)
    # A team or organization id is not a user budget, and the reverse.
    assert client.get(f"/admin/openai/budgets/{qa}", headers=root).status_code == 404
    assert client.get(f"/admin/openai/budgets/team/{acme}", headers=root).status_code == 404
    listing = client.get("/admin/openai/budgets", headers=root).json["data"]
    assert [b["scope"] for b in listing["users"] + listing["teams"] + listing["orgs"]] == ["user", "team", "org", "org"]
    assert client.delete(f"/admin/openai/budgets/org/{acme}", headers=owner).status_code == 403
    assert client.delete(f"/admin/openai/budgets/team/{qa}", headers=owner).status_code == 200
