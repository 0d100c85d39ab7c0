"""The Caller: the user with their organization, team, API key and every budget that can apply to
them, read in one aggregation."""
from bson import ObjectId

from backend.auth import repository
from backend.db import BUDGETS, DEFAULT_ORG_ID, USERS, get_db
from backend.orgs.repository import insert_org, insert_team
from tests.helpers import create_user, utc


def test_the_caller_carries_membership_and_every_budget_that_applies(app):
    loner, member = create_user(app, "loner@example.com"), create_user(app, "member@example.com")
    with app.app_context():
        db = get_db()
        org = insert_org(db, "Acme", utc(2026, 11, 1))
        team = insert_team(db, org["_id"], "QA", utc(2026, 11, 1))
        repository.set_membership(db, member["_id"], org["_id"], "member", team["_id"], DEFAULT_ORG_ID)
        plain = repository.find_caller(db, loner["_id"])
        assert (plain.id, plain.email, plain.org_id, plain.org_name, plain.team_id) == (
            loner["_id"], "loner@example.com", DEFAULT_ORG_ID, "default", None)
        assert plain.budgets == repository.CallerBudgets()
        db[BUDGETS].insert_many([{"_id": "default", "tokensPerDay": 1}, {"_id": member["_id"], "tokensPerDay": 2},
                                 {"_id": team["_id"], "scope": "team", "tokensPerDay": 3},
                                 {"_id": org["_id"], "scope": "org", "tokensPerDay": 4},
                                 {"_id": DEFAULT_ORG_ID, "scope": "org", "tokensPerDay": 5}])
        caller = repository.find_caller(db, member["_id"])
        budgets = caller.budgets
        assert [b["tokensPerDay"] for b in (budgets.own, budgets.default, budgets.team, budgets.org)] == [2, 1, 3, 4]
        assert budgets.key is None
        assert (caller.org_id, caller.org_name, caller.team_id, caller.team_name) == (org["_id"], "Acme", team["_id"],
                                                                                      "QA")
        loner_view = repository.find_caller(db, loner["_id"])
        assert loner_view.budgets.org["tokensPerDay"] == 5 and loner_view.budgets.team is None
        assert loner_view.budgets.own is None and loner_view.budgets.default["tokensPerDay"] == 1
        # An account from before organizations (no orgId) is read as a member of the default one.
        db[USERS].update_one({"_id": loner["_id"]}, {"$unset": {"orgId": "", "teamId": ""}})
        old = repository.find_caller(db, loner["_id"])
        assert (old.org_id, old.org_name, old.team_id, old.org_role) == (DEFAULT_ORG_ID, "default", None, "member")
        assert repository.find_caller(db, ObjectId()) is None


def test_a_key_acts_in_its_owners_current_team_as_a_plain_user_with_its_own_budget(app):
    member = create_user(app, "member@example.com", role="admin")
    with app.app_context():
        db = get_db()
        org = insert_org(db, "Acme", utc(2026, 11, 1))
        qa, ops = (insert_team(db, org["_id"], name, utc(2026, 11, 1)) for name in ("QA", "Ops"))
        repository.set_membership(db, member["_id"], org["_id"], "admin", qa["_id"], DEFAULT_ORG_ID)
        # A key made while its owner was in Ops: the owner is in QA now.
        key = {"_id": ObjectId(), "name": "ci", "teamId": ops["_id"]}
        db[BUDGETS].insert_many([{"_id": key["_id"], "scope": "key", "tokensPerDay": 7},
                                 {"_id": qa["_id"], "scope": "team", "tokensPerDay": 8}])
        caller = repository.find_caller(db, member["_id"], key)
        assert (caller.api_key_id, caller.api_key_name, caller.team_id, caller.team_name) == (
            key["_id"], "ci", qa["_id"], "QA")
        assert caller.budgets.key["tokensPerDay"] == 7 and caller.budgets.team["tokensPerDay"] == 8
        # A platform admin's key acts as a plain user: no admin scope reaches a user endpoint.
        assert (caller.role, caller.org_role, caller.scope, caller.platform_admin) == ("user", "member", None, False)
        signed_in = repository.find_caller(db, member["_id"])
        assert signed_in.platform_admin and signed_in.scope.platform
