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


def find_active(db, secret, now):
    """The key with this secret, unless it is revoked or expired."""
    key = db[API_KEYS].find_one({"hash": digest(secret), "revokedAt": None})
    if key is None or (key.get("expiresAt") is not None and key["expiresAt"] <= now):
        return None
    return key


def touch(db, key, now):
    if key.get("lastUsedAt") is None or now - key["lastUsedAt"] >= LAST_USED_RESOLUTION:
        db[API_KEYS].update_one({"_id": key["_id"]}, {"$set": {"lastUsedAt": now}})


def list_keys(db, query):
    return list(db[API_KEYS].find({**query, "revokedAt": None}, {"hash": 0}).sort([("createdAt", ASCENDING),
                                                                                      ("_id", ASCENDING)]))


def find_key(db, key_id):
    return db[API_KEYS].find_one({"_id": key_id, "revokedAt": None}, {"hash": 0})


def revoke(db, key_id, now):
    return db[API_KEYS].update_one({"_id": key_id, "revokedAt": None}, {"$set": {"revokedAt": now}}).modified_count == 1


def leave_team(db, team_id):
    db[API_KEYS].update_many({"teamId": team_id}, {"$set": {"teamId": None}})
