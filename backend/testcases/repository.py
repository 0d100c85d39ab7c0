"""The testcases collection. `owner` None means no owner filter (an admin sees all)."""
import re

from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.errors import DuplicateKeyError

from backend.db import TESTCASE_VECTORS, TESTCASES

PENDING, EMBEDDED, SKIPPED = "pending", "embedded", "skipped"


def _scope(case_id, owner):
    query = {"_id": case_id}
    if owner is not None:
        query["createdBy"] = owner
    return query


def insert_cases(db, documents, now):
    documents = [{**doc, "createdAt": now, "updatedAt": now} for doc in documents]
    result = db[TESTCASES].insert_many(documents)
    return [{**doc, "_id": inserted} for doc, inserted in zip(documents, result.inserted_ids)]


def find_case(db, case_id, owner):
    return db[TESTCASES].find_one(_scope(case_id, owner))


def list_cases(db, owner, filters, skip, limit):
    query = {} if owner is None else {"createdBy": owner}
    for field in ("priority", "type", "aiGenerated", "provider"):
        if filters.get(field) is not None:
            query[field] = filters[field]
    if filters.get("q"):
        query["title"] = {"$regex": re.escape(filters["q"]), "$options": "i"}
    total = db[TESTCASES].count_documents(query)
    cursor = db[TESTCASES].find(query).sort([("createdAt", DESCENDING), ("_id", DESCENDING)]).skip(skip).limit(limit)
    return list(cursor), total


def update_case(db, case_id, owner, changes, now):
    return db[TESTCASES].find_one_and_update(
        _scope(case_id, owner), {"$set": {**changes, "updatedAt": now}}, return_document=ReturnDocument.AFTER
    )


def delete_case(db, case_id, owner):
    """The deleted case's owner, or None when there was no such case; its vector goes with it."""
    case = db[TESTCASES].find_one_and_delete(_scope(case_id, owner), projection={"createdBy": True})
    if case is None:
        return None
    db[TESTCASE_VECTORS].delete_one({"_id": case_id})
    return case


def cases_by_ids(db, owner, ids):
    return {case["_id"]: case for case in db[TESTCASES].find({"_id": {"$in": list(ids)}, "createdBy": owner})}


# --- embeddings: a case's `embedding` state, its vector in TESTCASE_VECTORS ---

def pending_state(text_hash, now):
    """The `embedding` field of a case whose text (of this hash) waits for its vector."""
    return {"status": PENDING, "textHash": text_hash, "attempts": 0, "nextAttemptAt": now}


def set_pending(db, case_id, text_hash, now):
    """Make a case wait for the vector of its text (of this hash), due now."""
    db[TESTCASES].update_one({"_id": case_id}, {"$set": {"embedding": pending_state(text_hash, now)}})


def claim_due(db, now, claim_until, owner=None):
    """A due pending case, its next attempt moved to `claim_until` (another worker skips it; if this
    one dies, it is due again then), or None."""
    query = {"embedding.status": PENDING, "embedding.nextAttemptAt": {"$lte": now}}
    if owner is not None:
        query["createdBy"] = owner
    return db[TESTCASES].find_one_and_update(
        query, {"$set": {"embedding.nextAttemptAt": claim_until}}, sort=[("embedding.nextAttemptAt", ASCENDING)],
        return_document=ReturnDocument.AFTER)


def put_vector(db, case, key, dimensions, vector, text_hash, call_id, now):
    """Store a case's vector of the text of `text_hash` and mark the case embedded; returns whether
    the vector is current. A reply for a text the case no longer has never replaces the vector of
    its newer text: it is not written when the case moved on before, and when the case moves on
    while it is written, the case is made pending again so its newest text is embedded."""
    case_id = case["_id"]
    if _text_hash_of(db, case_id) != text_hash:
        return False
    try:
        stale = {"_id": case_id, "$or": [{"textHash": {"$ne": text_hash}}, {"key": {"$ne": key}}]}
        db[TESTCASE_VECTORS].replace_one(stale, {
            "owner": case["createdBy"], "key": key, "vector": vector, "dimensions": dimensions,
            "textHash": text_hash, "callId": call_id, "updatedAt": now}, upsert=True)
    except DuplicateKeyError:
        pass  # this text's vector of this key is there already
    marked = db[TESTCASES].update_one({"_id": case_id, "embedding.textHash": text_hash}, {"$set": {
        "embedding.status": EMBEDDED, "embedding.key": key, "embedding.embeddedAt": now,
        "embedding.lastError": None}}).matched_count
    if not marked:
        current = _text_hash_of(db, case_id)
        if current is not None:
            set_pending(db, case_id, current, now)
    return bool(marked)


def _text_hash_of(db, case_id):
    case = db[TESTCASES].find_one({"_id": case_id}, {"embedding.textHash": 1})
    return ((case or {}).get("embedding") or {}).get("textHash")


def claim_for_backfill(db, case_id, text_hash, now, until):
    """Claim a case for the backfill unless a worker holds it (pending, its claim not over yet)."""
    free = {"$or": [{"embedding.status": {"$ne": PENDING}}, {"embedding.nextAttemptAt": {"$lte": now}}]}
    state = {**pending_state(text_hash, now), "nextAttemptAt": until}
    return db[TESTCASES].find_one_and_update({"_id": case_id, **free}, {"$set": {"embedding": state}},
                                             return_document=ReturnDocument.AFTER)


def retry_later(db, case_ids, when, error):
    db[TESTCASES].update_many({"_id": {"$in": list(case_ids)}, "embedding.status": PENDING}, {
        "$set": {"embedding.nextAttemptAt": when, "embedding.lastError": error}, "$inc": {"embedding.attempts": 1}})


def skip(db, case_ids, reason):
    db[TESTCASES].update_many({"_id": {"$in": list(case_ids)}, "embedding.status": PENDING}, {
        "$set": {"embedding.status": SKIPPED, "embedding.lastError": reason}})


def vectors_of(db, owner, key, since=None):
    """[(case id, stored vector, updatedAt)] of an owner's vectors of one key, changed since `since`."""
    query = {"owner": owner, "key": key}
    if since is not None:
        query["updatedAt"] = {"$gte": since}
    return [(row["_id"], row["vector"], row["updatedAt"])
            for row in db[TESTCASE_VECTORS].find(query, {"vector": True, "updatedAt": True})]


def _not_embedded_with(key_pattern, after_id):
    """Cases (after `after_id`) not embedded, or embedded with a key `key_pattern` does not match."""
    query = {"$or": [{"embedding.status": {"$ne": EMBEDDED}},
                     {"embedding.key": {"$not": re.compile(key_pattern)}}]}
    if after_id is not None:
        query["_id"] = {"$gt": after_id}
    return query


def not_embedded_with(db, key_pattern, after_id, limit):
    """The backfill's next page, by _id."""
    return list(db[TESTCASES].find(_not_embedded_with(key_pattern, after_id)).sort("_id", ASCENDING).limit(limit))


def count_not_embedded_with(db, key_pattern, after_id):
    return db[TESTCASES].count_documents(_not_embedded_with(key_pattern, after_id))
