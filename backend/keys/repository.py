"""API keys: the only code that knows their document shape. The secret itself is never
stored: `hash` is its SHA-256 (a key is 256 random bits, so a fast hash is safe), `prefix`
its first characters, for people to tell their keys apart."""
import hashlib
from datetime import timedelta

from pymongo import ASCENDING

from backend.db import API_KEYS

# lastUsedAt moves at most this often, so a busy key costs no write per request.
LAST_USED_RESOLUTION = timedelta(minutes=1)


def digest(secret):
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def insert_key(db, document):
    document["_id"] = db[API_KEYS].insert_one(document).inserted_id
    return document


def find_by_secret(db, secret):
    """The key with this secret, revoked or not (None for a secret no key has)."""
    return db[API_KEYS].find_one({"hash": digest(secret)})


def touch(db, key, now):
    if key.get("lastUsedAt") is None or now - key["lastUsedAt"] >= LAST_USED_RESOLUTION:
        db[API_KEYS].update_one({"_id": key["_id"]}, {"$set": {"lastUsedAt": now}})


def list_keys(db, query):
    return list(db[API_KEYS].find({**query, "revokedAt": None}, {"hash": 0}).sort([("createdAt", ASCENDING),
                                                                                      ("_id", ASCENDING)]))


def find_key(db, key_id):
    return db[API_KEYS].find_one({"_id": key_id, "revokedAt": None}, {"hash": 0})


def revoke(db, key_id, now, reason=None, query=None):
    """Revoke the key, if it matches `query` too; whether it was revoked now."""
    return db[API_KEYS].update_one({**(query or {}), "_id": key_id, "revokedAt": None},
                                   {"$set": {"revokedAt": now, "revokedReason": reason}}).modified_count == 1


def keys_of(db, key_ids):
    return list(db[API_KEYS].find({"_id": {"$in": list(key_ids)}}, {"hash": 0}))


def revoke_owned(db, user_id, now, reason, except_org=None):
    """Revoke the user's keys (those outside `except_org`, when given)."""
    query = {"userId": user_id, "revokedAt": None}
    if except_org is not None:
        query["orgId"] = {"$ne": except_org}
    return db[API_KEYS].update_many(query, {"$set": {"revokedAt": now, "revokedReason": reason}}).modified_count


def follow_team(db, user_id, org_id, team_id):
    """The user's keys in `org_id` now show the team they act in."""
    db[API_KEYS].update_many({"userId": user_id, "orgId": org_id, "revokedAt": None}, {"$set": {"teamId": team_id}})


def leave_team(db, team_id):
    db[API_KEYS].update_many({"teamId": team_id}, {"$set": {"teamId": None}})
