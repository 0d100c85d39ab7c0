"""Budgets and their counters. Counters hold reserved plus settled usage per owner and window.

A budget's _id is its owner: "default", a user's, team's, organization's or API key's id, with
`scope` "user" (absent on budgets from before organizations), "team", "org" or "key".
"""
from pymongo import ReturnDocument

from backend.db import BATCHES, BUDGET_COUNTERS, BUDGETS, DEFAULT_BUDGET_ID, KEPT_BATCHES, atomic, once_per_batch

DEFAULT = DEFAULT_BUDGET_ID
USER_SCOPE = {"scope": {"$nin": ["team", "org", "key"]}}


def get_budget(db, owner, scope="user"):
    budget = db[BUDGETS].find_one({"_id": owner})
    return budget if budget is not None and budget.get("scope", "user") == scope else None


def list_budgets(db, scope, org_id=None):
    """Budgets of one scope but users', by owner; with org_id, only those of that organization (its
    own, its teams', its keys')."""
    query = {"scope": scope} if org_id is None else {"scope": scope, "orgId": org_id}
    return list(db[BUDGETS].find(query).sort("_id", 1))


def list_user_budgets(db, user_ids=None):
    """Users' own budgets, by owner; with user_ids, only theirs."""
    query = {"_id": {"$ne": DEFAULT} if user_ids is None else {"$in": user_ids}, **USER_SCOPE}
    return list(db[BUDGETS].find(query).sort("_id", 1))


def find_budget(db, owner):
    """The owner's budget, whatever its scope."""
    return db[BUDGETS].find_one({"_id": owner})


def put_budget(db, owner, limits, now, admin_id, owner_fields=None, set_by=None, ceiling=None):
    """Set the limits of an owner's budget; `owner_fields` ({scope, orgId, teamId}) say whose it is,
    `set_by` at which level (platform or organization) and `ceiling` the limits a platform admin set."""
    return db[BUDGETS].find_one_and_update(
        {"_id": owner},
        {"$set": {**limits, **(owner_fields or {"scope": "user"}), "updatedAt": now, "updatedBy": admin_id,
                  "setBy": set_by, "ceiling": ceiling}},
        upsert=True,
        return_document=ReturnDocument.AFTER,
    )


def delete_budget(db, owner):
    return db[BUDGETS].delete_one({"_id": owner}).deleted_count == 1


EMPTY_COUNTER = {"tokens": 0, "costUnits": 0}


def get_counter(db, key, missing=EMPTY_COUNTER):
    with atomic(db):
        return db[BUDGET_COUNTERS].find_one({"_id": key}) or missing


def _open(db, key, fields, opening):
    """Create the counter at `opening()` -> (tokens, cost units), what the ledger already holds,
    unless it exists. Two first requests race to create it; $setOnInsert lets only one opening
    count (MongoDB retries a duplicate-key upsert itself)."""
    if db[BUDGET_COUNTERS].find_one({"_id": key}, {"_id": 1}) is not None:
        return
    opening_tokens, opening_units = opening()
    with atomic(db):
        db[BUDGET_COUNTERS].update_one(
            {"_id": key}, {"$setOnInsert": {**fields, "tokens": opening_tokens, "costUnits": opening_units,
                                            BATCHES: []}},
            upsert=True,
        )


# A counter remembers the latest reservations it took and gave back (ids), so that the
# reservation of a process that died before its call could record anything is given back once.
RESERVATIONS = "reservations"


def _remember(entry):
    return {"$push": {RESERVATIONS: {"$each": [entry], "$slice": -KEPT_BATCHES}}}


def try_add(db, key, fields, tokens, cost_units, token_limit, cost_limit, opening, reservation_id):
    """Add to a counter only if it stays within the limits; one atomic conditional update, which
    remembers `reservation_id`."""
    condition = {"_id": key}
    if token_limit is not None:
        condition["tokens"] = {"$lte": token_limit - tokens}
    if cost_limit is not None:
        condition["costUnits"] = {"$lte": cost_limit - cost_units}
    _open(db, key, fields, opening)
    with atomic(db):
        result = db[BUDGET_COUNTERS].update_one(condition, {"$inc": {"tokens": tokens, "costUnits": cost_units},
                                                            **_remember(reservation_id)})
    return result.modified_count == 1


def give_back(db, key, tokens, cost_units, reservation_id):
    """Give back a reservation the counter took (`try_add`) and has not given back yet: once,
    whoever asks (the request, or the recovery of its dead process)."""
    released = f"{reservation_id}:released"
    with atomic(db):
        db[BUDGET_COUNTERS].update_one(
            {"_id": key, "$and": [{RESERVATIONS: reservation_id}, {RESERVATIONS: {"$ne": released}}]},
            {"$inc": {"tokens": -tokens, "costUnits": -cost_units}, **_remember(released)})


def add_opened(db, key, fields, tokens, cost_units, opening, batch):
    """Add a written batch's usage to a counter once (a batch settled again after a crash changes
    it no more), opening the counter first at what the ledger holds when it does not exist yet."""
    counter = _add_once(db, key, tokens, cost_units, batch)
    if counter is None:
        _open(db, key, fields, opening)
        counter = _add_once(db, key, tokens, cost_units, batch)
    return counter


def _add_once(db, key, tokens, cost_units, batch):
    """The counter after adding to it once for this batch (or as it is, when it took the batch
    already); None when it does not exist yet (or was only just created by someone else: the
    caller opens it and tries again)."""
    not_taken, taken = once_per_batch(batch)
    with atomic(db):
        counter = db[BUDGET_COUNTERS].find_one_and_update(
            {"_id": key, **not_taken}, {"$inc": {"tokens": tokens, "costUnits": cost_units}, **taken},
            return_document=ReturnDocument.AFTER)
        return counter if counter is not None else db[BUDGET_COUNTERS].find_one({"_id": key, BATCHES: batch})


def add_once(db, key, fields, tokens, cost_units, batch):
    """A written batch's addition to a counter (the global spend), once, creating it when missing."""
    with atomic(db):
        db[BUDGET_COUNTERS].update_one({"_id": key}, {"$setOnInsert": {**fields, "tokens": 0, "costUnits": 0,
                                                                        BATCHES: []}}, upsert=True)
    return _add_once(db, key, tokens, cost_units, batch)

