"""Organizations and teams: the only code that writes them and knows their document shapes.
(A membership lives on the user document, which backend.auth.repository writes.)"""
import unicodedata

from pymongo import ASCENDING, ReturnDocument
from pymongo.errors import DuplicateKeyError

from backend.db import DEFAULT_ORG_ID, ORGANIZATIONS, TEAMS

DEFAULT_ORG_NAME = "default"


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


def insert_org(db, name, now, fields=None):
    doc = {"name": name, "nameKey": _key(name), "createdAt": now, **(fields or {})}
    try:
        doc["_id"] = db[ORGANIZATIONS].insert_one(doc).inserted_id
    except DuplicateKeyError:
        raise NameTaken(name) from None
    return doc


def update_org(db, org_id, changes, now):
    """Set the name, allowedModels and/or time zone fields given in `changes`."""
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
    return db[TEAMS].delete_one({"_id": team_id, "orgId": org_id}).deleted_count == 1
