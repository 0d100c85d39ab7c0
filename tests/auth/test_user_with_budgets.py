"""The user and every budget that can apply to them, read in one aggregation (MongoDB) or apart
(the embedded store): both give the same documents."""
from bson import ObjectId

from backend.auth import repository
from backend.db import BUDGETS, USERS, get_db
from backend.orgs.repository import DEFAULT_ORG_ID, insert_org, insert_team, set_membership
from tests.helpers import create_user, utc


def _both(db, user_id):
    aggregated = next(iter(db[USERS].aggregate(repository._with_budgets_pipeline(user_id))), None)
    return aggregated, repository._read_apart(db, user_id)


def test_one_aggregation_and_reads_apart_agree(app):
    loner, member = create_user(app, "loner@example.com"), create_user(app, "member@example.com")
    with app.app_context():
        db = get_db()
        org = insert_org(db, "Acme", utc(2026, 11, 1))
        team = insert_team(db, org["_id"], "QA", utc(2026, 11, 1))
        set_membership(db, member["_id"], org["_id"], "member", team["_id"], DEFAULT_ORG_ID)
        assert _both(db, loner["_id"])[0] == _both(db, loner["_id"])[1]
        db[BUDGETS].insert_many([{"_id": "default", "tokensPerDay": 1}, {"_id": member["_id"], "tokensPerDay": 2},
                                 {"_id": team["_id"], "scope": "team", "tokensPerDay": 3},
                                 {"_id": org["_id"], "scope": "org", "tokensPerDay": 4},
                                 {"_id": DEFAULT_ORG_ID, "scope": "org", "tokensPerDay": 5}])
        for user in (loner, member):
            aggregated, apart = _both(db, user["_id"])
            assert aggregated == apart
        keys = (repository.OWN_BUDGET, repository.DEFAULT_BUDGET, repository.TEAM_BUDGET, repository.ORG_BUDGET)
        assert [apart[key][0]["tokensPerDay"] for key in keys] == [2, 1, 3, 4]
        assert (apart[repository.ORG][0]["name"], apart[repository.TEAM][0]["name"]) == ("Acme", "QA")
        loner_view = repository.find_with_budgets(db, loner["_id"])
        assert loner_view[repository.ORG_BUDGET][0]["tokensPerDay"] == 5 and loner_view[repository.TEAM] == []
        # An account from before organizations (no orgId) is read as a member of the default one.
        db[USERS].update_one({"_id": loner["_id"]}, {"$unset": {"orgId": "", "teamId": ""}})
        aggregated, apart = _both(db, loner["_id"])
        assert aggregated == apart and apart[repository.ORG][0]["name"] == "default"
        assert _both(db, ObjectId()) == (None, None)
