"""Users collection: the only code that knows its document shape."""
from datetime import datetime, timezone

from pymongo.errors import DuplicateKeyError

from backend.budgets.repository import DEFAULT as DEFAULT_BUDGET_ID
from backend.db import BUDGETS, ORGANIZATIONS, TEAMS, USERS, is_embedded
from backend.orgs.repository import DEFAULT_ORG_ID, ORG_MEMBER


class EmailTaken(Exception):
    pass


def find_by_email(db, email):
    return db[USERS].find_one({"email": email.lower()})


# Where find_with_budgets puts the budgets that can apply to the user, and their organization
# and team (each a list of at most one document).
OWN_BUDGET, DEFAULT_BUDGET, TEAM_BUDGET, ORG_BUDGET, KEY_BUDGET = (
    "_ownBudget", "_defaultBudget", "_teamBudget", "_orgBudget", "_keyBudget")
ORG, TEAM = "_org", "_team"


def find_with_budgets(db, user_id, key=None):
    """The user with the budgets that can apply to them (their own, the default, their team's and
    their organization's) and their organization and team documents, each under its key above
    as a list of at most one: every request reads its user anyway, so a budget set a moment ago
    binds the next request in every worker without another read. A team budget is keyed by the
    team's id, an organization's by the organization's, an API key's by the key's.

    With an API `key`, the user as the key's requests act: with the key's team and `apiKeyId`,
    and the key's budget under KEY_BUDGET.

    On MongoDB this is one round trip (an aggregation with $lookup). The embedded store has no
    round trips to save and runs each $lookup in Python over the whole foreign collection, so
    there the same documents are read apart by _id, about three times faster."""
    if is_embedded(db):
        return _read_apart(db, user_id, key)
    return next(iter(db[USERS].aggregate(_with_budgets_pipeline(user_id, key))), None)


def _as_key(key):
    return {"teamId": key["teamId"], "apiKeyId": key["_id"], "apiKeyName": key["name"]}


def _with_budgets_pipeline(user_id, key=None):
    keyed = [{"$addFields": _as_key(key)},
             {"$lookup": {"from": BUDGETS, "localField": "apiKeyId", "foreignField": "_id", "as": KEY_BUDGET}}
             ] if key else []
    return [
        {"$match": {"_id": user_id}},
        *keyed,
        {"$lookup": {"from": BUDGETS, "localField": "_id", "foreignField": "_id", "as": OWN_BUDGET}},
        {"$addFields": {"_defaultBudgetId": DEFAULT_BUDGET_ID, "_orgId": {"$ifNull": ["$orgId", DEFAULT_ORG_ID]}}},
        {"$lookup": {"from": BUDGETS, "localField": "_defaultBudgetId", "foreignField": "_id", "as": DEFAULT_BUDGET}},
        {"$lookup": {"from": BUDGETS, "localField": "_orgId", "foreignField": "_id", "as": ORG_BUDGET}},
        {"$lookup": {"from": ORGANIZATIONS, "localField": "_orgId", "foreignField": "_id", "as": ORG}},
        {"$lookup": {"from": BUDGETS, "localField": "teamId", "foreignField": "_id", "as": TEAM_BUDGET}},
        {"$lookup": {"from": TEAMS, "localField": "teamId", "foreignField": "_id", "as": TEAM}},
        {"$project": {"_defaultBudgetId": 0, "_orgId": 0}},
    ]


def _read_apart(db, user_id, key=None):
    user = db[USERS].find_one({"_id": user_id})
    if user is None:
        return None
    if key:
        user.update(_as_key(key))
    org_id, team_id = user.get("orgId") or DEFAULT_ORG_ID, user.get("teamId")
    wanted = {OWN_BUDGET: user_id, DEFAULT_BUDGET: DEFAULT_BUDGET_ID, ORG_BUDGET: org_id, TEAM_BUDGET: team_id,
              **({KEY_BUDGET: key["_id"]} if key else {})}
    budgets = {doc["_id"]: doc for doc in db[BUDGETS].find({"_id": {"$in": [i for i in wanted.values() if i]}})}
    found = {key: [budgets[owner]] if owner in budgets else [] for key, owner in wanted.items()}
    found[ORG] = [org] if (org := db[ORGANIZATIONS].find_one({"_id": org_id})) else []
    found[TEAM] = [team] if team_id and (team := db[TEAMS].find_one({"_id": team_id})) else []
    return {**user, **found}


def find_by_id(db, user_id):
    return db[USERS].find_one({"_id": user_id})


def insert_user(db, email, password_hash, name, role):
    doc = {
        "email": email.lower(),
        "passwordHash": password_hash,
        "name": name,
        "role": role,
        "orgId": DEFAULT_ORG_ID,
        "orgRole": ORG_MEMBER,
        "teamId": None,
        "isActive": True,
        "createdAt": datetime.now(timezone.utc),
    }
    try:
        doc["_id"] = db[USERS].insert_one(doc).inserted_id
    except DuplicateKeyError:
        raise EmailTaken(email) from None
    return doc


def set_role(db, user_id, role):
    db[USERS].update_one({"_id": user_id}, {"$set": {"role": role, "isActive": True}})
    return find_by_id(db, user_id)


def set_password_hash(db, user_id, password_hash):
    db[USERS].update_one({"_id": user_id}, {"$set": {"passwordHash": password_hash}})
