"""Organizations, teams and memberships: the only code that knows their document shapes.

A membership lives on the user document: `orgId`, `orgRole` ("admin" | "member") and
`teamId` (None when the user is in no team).
"""
import unicodedata

from pymongo import ASCENDING, ReturnDocument
from pymongo.errors import DuplicateKeyError

# DEFAULT_ORG_ID is imported from here by the packages above orgs as well.
from backend.db import API_KEYS, BUDGETS, DEFAULT_ORG_ID, ORGANIZATIONS, TEAMS, USERS

DEFAULT_ORG_NAME = "default"
ORG_ADMIN, ORG_MEMBER = "admin", "member"
ORG_ROLES = (ORG_ADMIN, ORG_MEMBER)


class NameTaken(Exception):
    pass


def _key(name):
    """Names are unique case-insensitively and across look-alike forms (full-width letters,
    composed and decomposed accents): a unique index on this key."""
    return unicodedata.normalize("NFKC", name).casefold()


def ensure_default_org(db, now):
    db[ORGANIZATIONS].update_one(
        {"_id": DEFAULT_ORG_ID},
        {"$setOnInsert": {"name": DEFAULT_ORG_NAME, "nameKey": _key(DEFAULT_ORG_NAME), "createdAt": now}},
        upsert=True,
    )


def insert_org(db, name, now):
    doc = {"name": name, "nameKey": _key(name), "createdAt": now}
    try:
        doc["_id"] = db[ORGANIZATIONS].insert_one(doc).inserted_id
    except DuplicateKeyError:
        raise NameTaken(name) from None
    return doc


def update_org(db, org_id, changes, now):
    """Set the name and/or allowedModels given in `changes`."""
    fields = dict(changes, updatedAt=now)
    if "name" in changes:
        fields["nameKey"] = _key(changes["name"])
    try:
        return db[ORGANIZATIONS].find_one_and_update({"_id": org_id}, {"$set": fields},
                                                     return_document=ReturnDocument.AFTER)
    except DuplicateKeyError:
        raise NameTaken(changes["name"]) from None


def find_org(db, org_id):
    return db[ORGANIZATIONS].find_one({"_id": org_id})


def list_orgs(db, org_id=None):
    query = {} if org_id is None else {"_id": org_id}
    return list(db[ORGANIZATIONS].find(query).sort("nameKey", ASCENDING))


def names(db, collection, ids):
    """{id: name} of the organizations (ORGANIZATIONS) or teams (TEAMS) among ids."""
    return {doc["_id"]: doc["name"] for doc in db[collection].find({"_id": {"$in": list(ids)}}, {"name": 1})}


def member_counts(db, field, ids):
    """{orgId or teamId: number of users} for the ids given."""
    rows = db[USERS].aggregate([{"$match": {field: {"$in": list(ids)}}},
                                {"$group": {"_id": f"${field}", "count": {"$sum": 1}}}])
    return {row["_id"]: row["count"] for row in rows}


def insert_team(db, org_id, name, now):
    doc = {"orgId": org_id, "name": name, "nameKey": _key(name), "createdAt": now}
    try:
        doc["_id"] = db[TEAMS].insert_one(doc).inserted_id
    except DuplicateKeyError:
        raise NameTaken(name) from None
    return doc


def find_team(db, team_id, org_id=None):
    query = {"_id": team_id}
    if org_id is not None:
        query["orgId"] = org_id
    return db[TEAMS].find_one(query)


def list_teams(db, org_id):
    return list(db[TEAMS].find({"orgId": org_id}).sort("nameKey", ASCENDING))


def delete_team(db, org_id, team_id):
    """Remove the team, its members' and keys' place in it and its budget; their ledger records keep it."""
    if db[TEAMS].delete_one({"_id": team_id, "orgId": org_id}).deleted_count != 1:
        return False
    leave_team(db, team_id)
    db[BUDGETS].delete_one({"_id": team_id})
    return True


def set_membership(db, user_id, org_id, role, team_id, current_org):
    """Move the user, only if they are still in `current_org` (None when read without one);
    returns the user after, or None when someone moved them meanwhile."""
    return db[USERS].find_one_and_update(
        {"_id": user_id, "orgId": current_org}, {"$set": {"orgId": org_id, "orgRole": role, "teamId": team_id}},
        return_document=ReturnDocument.AFTER)


def leave_team(db, team_id):
    """Take every member and API key out of the team (it was deleted)."""
    db[USERS].update_many({"teamId": team_id}, {"$set": {"teamId": None}})
    db[API_KEYS].update_many({"teamId": team_id}, {"$set": {"teamId": None}})


def members_page(db, org_id, skip, limit):
    query = {"orgId": org_id}
    total = db[USERS].count_documents(query)
    cursor = db[USERS].find(query, {"passwordHash": 0}).sort("email", ASCENDING).skip(skip).limit(limit)
    return list(cursor), total


def find_member(db, org_id, user_id):
    return db[USERS].find_one({"_id": user_id, "orgId": org_id})
