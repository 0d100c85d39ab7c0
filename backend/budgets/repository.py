"""Budgets and their counters. Counters hold reserved plus settled usage per user and window."""
from pymongo import ReturnDocument

from backend.db import BUDGET_COUNTERS, BUDGETS, atomic

DEFAULT = "default"


def get_budget(db, owner):
    return db[BUDGETS].find_one({"_id": owner})


def list_user_budgets(db):
    return list(db[BUDGETS].find({"_id": {"$ne": DEFAULT}}).sort("_id", 1))


def put_budget(db, owner, limits, now, admin_id):
    return db[BUDGETS].find_one_and_update(
        {"_id": owner},
        {"$set": {**limits, "updatedAt": now, "updatedBy": admin_id}},
        upsert=True,
        return_document=ReturnDocument.AFTER,
    )


def delete_budget(db, owner):
    return db[BUDGETS].delete_one({"_id": owner}).deleted_count == 1


def get_counter(db, key):
    return db[BUDGET_COUNTERS].find_one({"_id": key}) or {"tokens": 0, "costUnits": 0}


def try_add(db, key, fields, tokens, cost_units, token_limit, cost_limit):
    """Add to a counter only if it stays within the limits; one atomic conditional update."""
    condition = {"_id": key}
    if token_limit is not None:
        condition["tokens"] = {"$lte": token_limit - tokens}
    if cost_limit is not None:
        condition["costUnits"] = {"$lte": cost_limit - cost_units}
    with atomic(db):
        # Creating the counter races like the update does (MongoDB retries a duplicate-key upsert itself).
        db[BUDGET_COUNTERS].update_one(
            {"_id": key}, {"$setOnInsert": {**fields, "tokens": 0, "costUnits": 0}}, upsert=True
        )
        result = db[BUDGET_COUNTERS].update_one(condition, {"$inc": {"tokens": tokens, "costUnits": cost_units}})
    return result.modified_count == 1


def add(db, key, fields, tokens, cost_units):
    """Unconditional adjustment (settling a reservation, or the global spend counter)."""
    with atomic(db):
        return db[BUDGET_COUNTERS].find_one_and_update(
            {"_id": key},
            {"$inc": {"tokens": tokens, "costUnits": cost_units}, "$setOnInsert": fields},
            upsert=True,
            return_document=ReturnDocument.AFTER,
        )
