"""Users collection: the only code that writes it and knows its document shape (a membership,
`orgId`, `orgRole` and `teamId`, lives on the user document; orgs changes it through here)."""
from pymongo import ASCENDING, ReturnDocument
from pymongo.errors import DuplicateKeyError

from backend.auth.caller import ORG_MEMBER, ROLE_ADMIN, Caller, CallerBudgets
from backend.db import BUDGETS, DEFAULT_BUDGET_ID, DEFAULT_ORG_ID, ORGANIZATIONS, TEAMS, USERS


class EmailTaken(Exception):
    pass


def find_by_email(db, email):
    return db[USERS].find_one({"email": email.lower()})


def find_by_id(db, user_id):
    return db[USERS].find_one({"_id": user_id})


def find_caller(db, user_id, key=None):
    """The Caller for a user (None when there is none), with their organization, team and every
    budget that can apply to them, read in one aggregation: every request reads its user anyway,
    so a budget set a moment ago binds the next request in every worker without another read.
    With an API `key` (its stored document), the caller as the key acts: its owner as a plain
    user, with the key's own budget too."""
    found = next(iter(db[USERS].aggregate(_caller_pipeline(user_id, key))), None)
    if found is None:
        return None
    first = {name: (found.pop(name) or [None])[0] for name in _LOOKUPS}
    budgets = CallerBudgets(own=first["own"], default=first["default"], team=first["teamBudget"],
                            org=first["orgBudget"], key=first["keyBudget"])
    return Caller.from_documents(found, first["org"], first["team"], key, budgets)


_LOOKUPS = ("own", "default", "orgBudget", "org", "teamBudget", "team", "keyBudget")


def _caller_pipeline(user_id, key=None):
    def lookup(collection, local, name):
        return {"$lookup": {"from": collection, "localField": local, "foreignField": "_id", "as": name}}

    return [
        {"$match": {"_id": user_id}},
        {"$addFields": {"_default": DEFAULT_BUDGET_ID, "_orgId": {"$ifNull": ["$orgId", DEFAULT_ORG_ID]},
                        "_keyId": key["_id"] if key else None}},
        lookup(BUDGETS, "_id", "own"),
        lookup(BUDGETS, "_default", "default"),
        lookup(BUDGETS, "_orgId", "orgBudget"),
        lookup(ORGANIZATIONS, "_orgId", "org"),
        lookup(BUDGETS, "teamId", "teamBudget"),
        lookup(TEAMS, "teamId", "team"),
        lookup(BUDGETS, "_keyId", "keyBudget"),
        {"$project": {"_default": 0, "_orgId": 0, "_keyId": 0, "passwordHash": 0}},
    ]


def insert_user(db, email, password_hash, name, role, now):
    doc = {
        "email": email.lower(),
        "passwordHash": password_hash,
        "name": name,
        "role": role,
        "orgId": DEFAULT_ORG_ID,
        "orgRole": ORG_MEMBER,
        "teamId": None,
        "isActive": True,
        "createdAt": now,
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


def set_membership(db, user_id, org_id, role, team_id, current_org):
    """Move the user, only if they are still in `current_org` (None when read without one);
    returns the user after, or None when someone moved them meanwhile."""
    return db[USERS].find_one_and_update(
        {"_id": user_id, "orgId": current_org}, {"$set": {"orgId": org_id, "orgRole": role, "teamId": team_id}},
        return_document=ReturnDocument.AFTER)


def leave_team(db, team_id):
    """Take every member out of the team (it was deleted)."""
    db[USERS].update_many({"teamId": team_id}, {"$set": {"teamId": None}})


def adopt_into(db, org_id):
    """Users from before organizations become members of `org_id`, in no team."""
    db[USERS].update_many({"orgId": {"$exists": False}}, {"$set": {"orgId": org_id, "orgRole": ORG_MEMBER,
                                                                   "teamId": None}})


def platform_admin_ids(db):
    return frozenset(user["_id"] for user in db[USERS].find({"role": ROLE_ADMIN}, {"_id": 1}))


def ids_in_org(db, org_id):
    return [user["_id"] for user in db[USERS].find({"orgId": org_id}, {"_id": 1})]


def member_counts(db, field, ids, among=None, leaving_out=()):
    """{orgId or teamId: number of users} for the ids given (only users `among`, when given; none
    of `leaving_out`)."""
    match = {field: {"$in": list(ids)}}
    if among is not None or leaving_out:
        match["_id"] = {**({"$in": sorted(among)} if among is not None else {}),
                        **({"$nin": sorted(leaving_out)} if leaving_out else {})}
    rows = db[USERS].aggregate([{"$match": match},
                                {"$group": {"_id": f"${field}", "count": {"$sum": 1}}}])
    return {row["_id"]: row["count"] for row in rows}


def members_page(db, org_id, skip, limit, hidden=()):
    query = {"orgId": org_id, **({"_id": {"$nin": sorted(hidden)}} if hidden else {})}
    total = db[USERS].count_documents(query)
    cursor = db[USERS].find(query, {"passwordHash": 0}).sort("email", ASCENDING).skip(skip).limit(limit)
    return list(cursor), total


def find_member(db, org_id, user_id):
    return db[USERS].find_one({"_id": user_id, "orgId": org_id})
