"""Changes to stored ledger data, applied once at start-up (and by scripts/create_indexes.py).

Each migration is idempotent and safe when several workers start at once: its steps can run
twice without harm, and it is marked done only after they all ran.
"""
import logging

from pymongo.errors import OperationFailure

from backend.db import MIGRATIONS, USAGE
from backend.usage.rollups import KEY_DEFAULTS, ROLLUPS

log = logging.getLogger("backend.usage")
OUTCOMES = "2026-11-ledger-outcomes"


def _record_outcomes(db):
    """Records from before outcomes existed were all successful requests, and their rollup
    documents were keyed without an outcome (with a unique index that would now refuse a
    second outcome for the same day, user and model)."""
    changed = db[USAGE].update_many({"outcome": {"$exists": False}},
                                    {"$set": {"outcome": KEY_DEFAULTS["outcome"], "estimated": False}}).modified_count
    for rollup in ROLLUPS:
        if "outcome" not in rollup.key:
            continue
        old_key = [name for name in rollup.key if name != "outcome"]
        old_index = "_".join(f"{name}_1" for name in old_key)
        try:
            if old_index in db[rollup.collection].index_information():
                db[rollup.collection].drop_index(old_index)
        except OperationFailure:
            log.info("Index %s.%s was already dropped by another worker", rollup.collection, old_index)
        db[rollup.collection].update_many({"outcome": {"$exists": False}},
                                          {"$set": {"outcome": KEY_DEFAULTS["outcome"]}})
    return changed


MIGRATIONS_IN_ORDER = ((OUTCOMES, _record_outcomes),)


def migrate(db, now):
    """Apply every migration not yet marked done; returns the names applied."""
    applied = []
    for name, step in MIGRATIONS_IN_ORDER:
        if db[MIGRATIONS].find_one({"_id": name}, {"_id": 1}) is not None:
            continue
        changed = step(db)
        db[MIGRATIONS].update_one({"_id": name}, {"$setOnInsert": {"appliedAt": now, "changed": changed}},
                                  upsert=True)
        log.info("Migration %s applied (%d ledger records changed)", name, changed)
        applied.append(name)
    return applied
