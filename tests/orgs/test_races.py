"""What the outside audit found: races between checks and writes, partial reservations, a
database that is down at start-up, look-alike names. Each race is forced deterministically by
running the competing write at the exact moment between the check and the write."""
from datetime import datetime, timezone

import pytest
from bson import ObjectId
from pymongo.errors import AutoReconnect, ServerSelectionTimeoutError

from backend import background
from backend.budgets import repository as budget_repository
from backend.budgets.services import _exceeded
from backend.db import BUDGET_COUNTERS, BUDGETS, MIGRATIONS, USAGE, USERS, get_db
from backend.auth import repository as user_repository
from backend.orgs.repository import DEFAULT_ORG_ID
from backend.usage import migrations
from backend.runtime import runtime
from tests.budgets.support import MAX_OUTPUT, build, generate, provider_reporting, worst_case_tokens
from tests.helpers import bearer, create_user
from tests.orgs.support import make_org, make_team, member

NOW = datetime(2026, 11, 23, 12, tzinfo=timezone.utc)


def test_a_refusal_read_after_the_counter_dropped_names_the_token_limit(app):
    with app.app_context():
        db = get_db()
        budget_repository.add_once(db, "u|day|2026-11-23", {"owner": "u"}, 10, 0, "a batch")
        # The counter (10) is no longer over the limit (100) when the refusal is written.
        refusal = _exceeded(db, "u|day|2026-11-23", "team", "day", 100, None, 50, 0, NOW, NOW)
    assert refusal.status == 429 and refusal.data["unit"] == "tokens" and refusal.data["used"] == 10


def test_a_team_deleted_while_a_member_is_added_leaves_nobody_in_it(app, client, admin_headers, monkeypatch):
    acme = make_org(client, admin_headers, "Acme")
    qa = make_team(client, admin_headers, acme, "QA")
    user = create_user(app, "dev@example.com")
    real_set_membership = user_repository.set_membership

    def team_deleted_meanwhile(db, *args):
        assert client.delete(f"/admin/orgs/{acme}/teams/{qa}", headers=admin_headers).status_code == 200
        return real_set_membership(db, *args)

    monkeypatch.setattr(user_repository, "set_membership", team_deleted_meanwhile)
    response = client.post(f"/admin/orgs/{acme}/members", json={"email": "dev@example.com", "role": "member",
                                                                "teamId": qa}, headers=admin_headers)
    assert response.status_code == 404
    with app.app_context():
        assert get_db()[USERS].find_one({"_id": user["_id"]})["teamId"] is None


def test_a_team_deleted_while_its_budget_is_set_keeps_no_budget(app, client, admin_headers, monkeypatch):
    acme = make_org(client, admin_headers, "Acme")
    qa = make_team(client, admin_headers, acme, "QA")
    real_put = budget_repository.put_budget

    def team_deleted_meanwhile(*args, **kwargs):
        assert client.delete(f"/admin/orgs/{acme}/teams/{qa}", headers=admin_headers).status_code == 200
        return real_put(*args, **kwargs)

    monkeypatch.setattr(budget_repository, "put_budget", team_deleted_meanwhile)
    response = client.put(f"/admin/openai/budgets/team/{qa}", json={"tokensPerDay": 5}, headers=admin_headers)
    assert response.status_code == 404
    with app.app_context():
        assert get_db()[BUDGETS].count_documents({}) == 0


def test_a_member_moved_meanwhile_is_not_moved_again(app, client, admin_headers, monkeypatch):
    acme, globex = make_org(client, admin_headers, "Acme"), make_org(client, admin_headers, "Globex")
    user, _ = member(app, client, admin_headers, acme, "dev@example.com")
    _, owner = member(app, client, admin_headers, acme, "owner@example.com", role="admin")
    real_set_membership = user_repository.set_membership
    moves = []

    def platform_moves_them_first(db, *args):
        if not moves:  # the platform admin's move lands between the org admin's check and write
            moves.append(1)
            db[USERS].update_one({"_id": user["_id"]}, {"$set": {"orgId": ObjectId(globex), "orgRole": "admin"}})
        return real_set_membership(db, *args)

    monkeypatch.setattr(user_repository, "set_membership", platform_moves_them_first)
    removed = client.delete(f"/admin/orgs/{acme}/members/{user['_id']}", headers=owner)
    assert removed.status_code == 404
    with app.app_context():
        stored = get_db()[USERS].find_one({"_id": user["_id"]})
    assert (str(stored["orgId"]), stored["orgRole"]) == (globex, "admin")


@pytest.mark.parametrize("fail_open", [False, True])
def test_a_database_error_part_way_through_a_reservation_gives_back_what_it_took(make_app, monkeypatch, fail_open):
    per_request = worst_case_tokens()
    transport, requests = provider_reporting(per_request - MAX_OUTPUT)
    app = build(make_app, transport, BUDGETS_FAIL_OPEN=fail_open)
    client = app.test_client()
    create_user(app, "root@example.com", role="admin")
    root = bearer(client, "root@example.com")
    acme = make_org(client, root, "Acme")
    qa = make_team(client, root, acme, "QA")
    user, headers = member(app, client, root, acme, "dev@acme.test", team_id=qa)
    for url in (f"/admin/openai/budgets/{user['_id']}", f"/admin/openai/budgets/team/{qa}",
                f"/admin/openai/budgets/org/{acme}"):
        client.put(url, json={"tokensPerDay": 100 * per_request}, headers=root)
    real_try_add = budget_repository.try_add

    def org_counter_unreachable(db, key, *args):
        if key.startswith("org:"):
            raise AutoReconnect("org counter shard down")
        return real_try_add(db, key, *args)

    monkeypatch.setattr(budget_repository, "try_add", org_counter_unreachable)
    response = generate(client, headers)
    monkeypatch.setattr(budget_repository, "try_add", real_try_add)
    with app.app_context():
        db = get_db()
        ledger = sum(record["totalTokens"] for record in db[USAGE].find())
        counters = {doc["_id"].split("|")[0]: doc["tokens"] for doc in db[BUDGET_COUNTERS].find({"window": "day"})}
    if fail_open:
        # BUDGETS_FAIL_OPEN: the call goes ahead unchecked, and every counter still equals the ledger.
        assert response.status_code == 200 and ledger == per_request
        assert counters == {str(user["_id"]): ledger, f"team:{qa}": ledger, f"org:{acme}": ledger}
    else:
        # A budget that cannot be checked refuses the call before the provider is asked: nothing is
        # billed, and what the request had reserved on the other counters is given back.
        assert response.status_code == 503 and "budget cannot be checked" in response.json["message"]
        assert (len(requests), ledger) == (0, 0)
        assert counters == {str(user["_id"]): 0, f"team:{qa}": 0}


def test_start_up_tasks_missed_while_the_database_was_down_run_in_the_background(make_app, monkeypatch):
    real_migrate = migrations.migrate
    calls = []

    def down_once(db, now, **options):
        calls.append(1)
        if len(calls) == 1:
            raise ServerSelectionTimeoutError("no servers")
        return real_migrate(db, now, **options)

    monkeypatch.setattr(migrations, "migrate", down_once)
    app = make_app()
    assert runtime(app).start_up_pending is True
    with app.app_context():
        assert get_db()[MIGRATIONS].count_documents({}) == 0
    background.run_once(app)
    assert runtime(app).start_up_pending is False
    with app.app_context():
        db = get_db()
        assert db[MIGRATIONS].count_documents({}) == len(migrations.MIGRATIONS_IN_ORDER)
        assert db["organizations"].find_one({"_id": DEFAULT_ORG_ID})["name"] == "default"


def test_look_alike_and_invisible_names_are_refused(client, admin_headers):
    make_org(client, admin_headers, "Acme Å")
    for twin in ("ＡＣＭＥ Å", "acme A\u030a", " Acme Å "):
        assert client.post("/admin/orgs", json={"name": twin}, headers=admin_headers).status_code == 409, twin
    for invisible in ("\u200b", "\ufeff", "Team\u200b", "a\u0085b", "evil\u202etxt", "a\u2028b"):
        response = client.post("/admin/orgs", json={"name": invisible}, headers=admin_headers)
        assert response.status_code == 422, invisible
