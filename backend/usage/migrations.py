"""Changes to stored ledger data, applied once at start-up (and by scripts/create_indexes.py).

Each migration is idempotent and safe when several workers start at once: its steps can run
twice without harm, and it is marked done only after they all ran.
"""
import logging

from pymongo.errors import OperationFailure

from backend.db import MIGRATIONS, USAGE, USERS
from backend.orgs.repository import DEFAULT_ORG_ID, ORG_MEMBER, ensure_default_org
from backend.usage.rollups import KEY_DEFAULTS, MEMBERSHIP, ROLLUPS

log = logging.getLogger("backend.usage")
OUTCOMES = "2026-11-ledger-outcomes"
ORGANIZATIONS = "2026-11-organizations"
API_KEYS = "2026-11-api-keys"


def _drop_outdated_key_indexes(db):
    """A rollup's unique index on its key from before the key grew would refuse documents that
    differ only in the new fields."""
    for rollup in ROLLUPS:
        current = "_".join(f"{name}_1" for name in rollup.key)
        for name, info in db[rollup.collection].index_information().items():
            if not info.get("unique") or name == current:
                continue
            try:
                db[rollup.collection].drop_index(name)
            except OperationFailure:
                log.info("Index %s.%s was already dropped by another worker", rollup.collection, name)


def _record_outcomes(db, now):
    """Records from before outcomes existed were all successful requests, and their rollup
    documents were keyed without an outcome (with a unique index that would now refuse a
    second outcome for the same day, user and model)."""
    changed = db[USAGE].update_many({"outcome": {"$exists": False}},
                                    {"$set": {"outcome": KEY_DEFAULTS["outcome"], "estimated": False}}).modified_count
    _drop_outdated_key_indexes(db)
    for rollup in ROLLUPS:
        if "outcome" in rollup.key:
            db[rollup.collection].update_many({"outcome": {"$exists": False}},
                                              {"$set": {"outcome": KEY_DEFAULTS["outcome"]}})
    return changed


def _organizations(db, now):
    """Before organizations every user, and so every call, belonged to the default one, in no
    team: users, ledger records and rollup documents say so, and the rollups' unique keys gain
    the two fields."""
    ensure_default_org(db, now)
    db[USERS].update_many({"orgId": {"$exists": False}},
                          {"$set": {"orgId": DEFAULT_ORG_ID, "orgRole": ORG_MEMBER, "teamId": None}})
    membership = {"$set": {"orgId": DEFAULT_ORG_ID, "teamId": None}}
    changed = db[USAGE].update_many({"orgId": {"$exists": False}}, membership).modified_count
    _drop_outdated_key_indexes(db)
    for rollup in ROLLUPS:
        if MEMBERSHIP[0] in rollup.key:
            db[rollup.collection].update_many({"orgId": {"$exists": False}}, membership)
    return changed


def _api_keys(db, now):
    """The user rollups' keys gained apiKeyId (None, like a missing field, for calls made
    without a key): only their unique indexes change."""
    _drop_outdated_key_indexes(db)
    return 0


MIGRATIONS_IN_ORDER = ((OUTCOMES, _record_outcomes), (ORGANIZATIONS, _organizations), (API_KEYS, _api_keys))


def migrate(db, now):
    """Apply every migration not yet marked done; returns the names applied."""
    applied = []
    for name, step in MIGRATIONS_IN_ORDER:
        if db[MIGRATIONS].find_one({"_id": name}, {"_id": 1}) is not None:
            continue
        changed = step(db, now)
        # Workers that ran a step at once changed disjoint records: their counts add up.
        db[MIGRATIONS].update_one({"_id": name}, {"$setOnInsert": {"appliedAt": now}, "$inc": {"changed": changed}},
                                  upsert=True)
        log.info("Migration %s applied (%d ledger records changed)", name, changed)
        applied.append(name)
    return applied


def migration_report(db):
    """[(name, applied at, ledger records changed)] of the applied migrations, in order."""
    done = {doc["_id"]: doc for doc in db[MIGRATIONS].find()}
    return [(name, done[name]["appliedAt"], done[name].get("changed", 0))
            for name, _ in MIGRATIONS_IN_ORDER if name in done]
