"""Users collection: the only code that knows its document shape."""
from datetime import datetime, timezone

from pymongo.errors import DuplicateKeyError

from backend.budgets.repository import DEFAULT as DEFAULT_BUDGET_ID
from backend.db import BUDGETS, ORGANIZATIONS, TEAMS, USERS
from backend.orgs.repository import DEFAULT_ORG_ID, ORG_MEMBER


class EmailTaken(Exception):
    pass


def find_by_email(db, email):
    return db[USERS].find_one({"email": email.lower()})


# Where find_with_budgets puts the budgets that can apply to the user, and their organization
# and team (each a list of at most one document).
OWN_BUDGET, DEFAULT_BUDGET, TEAM_BUDGET, ORG_BUDGET = "_ownBudget", "_defaultBudget", "_teamBudget", "_orgBudget"
ORG, TEAM = "_org", "_team"


def find_with_budgets(db, user_id):
    """The user with the budgets that can apply to them (their own, the default, their team's and
    their organization's) and their organization and team documents, in one round trip: every
    request reads its user anyway, so a budget set a moment ago binds the next request in every
    worker without another read. A team budget is keyed by the team's id, an organization's by
    the organization's."""
    rows = db[USERS].aggregate([
        {"$match": {"_id": user_id}},
        {"$lookup": {"from": BUDGETS, "localField": "_id", "foreignField": "_id", "as": OWN_BUDGET}},
        {"$addFields": {"_defaultBudgetId": DEFAULT_BUDGET_ID, "_orgId": {"$ifNull": ["$orgId", DEFAULT_ORG_ID]}}},
        {"$lookup": {"from": BUDGETS, "localField": "_defaultBudgetId", "foreignField": "_id", "as": DEFAULT_BUDGET}},
        {"$lookup": {"from": BUDGETS, "localField": "_orgId", "foreignField": "_id", "as": ORG_BUDGET}},
        {"$lookup": {"from": ORGANIZATIONS, "localField": "_orgId", "foreignField": "_id", "as": ORG}},
        {"$lookup": {"from": BUDGETS, "localField": "teamId", "foreignField": "_id", "as": TEAM_BUDGET}},
        {"$lookup": {"from": TEAMS, "localField": "teamId", "foreignField": "_id", "as": TEAM}},
        {"$project": {"_defaultBudgetId": 0, "_orgId": 0}},
    ])
    return next(iter(rows), None)


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
