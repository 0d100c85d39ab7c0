"""The testcases collection. `owner` None means no owner filter (an admin sees all)."""
import re

from pymongo import DESCENDING, ReturnDocument

from backend.db import TESTCASES

# Similar-case search looks at this many of a user's newest test cases.
REFERENCE_POOL = 500


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
    return db[TESTCASES].delete_one(_scope(case_id, owner)).deleted_count == 1


def reference_pool(db, owner):
    return list(db[TESTCASES].find({"createdBy": owner}).sort("createdAt", DESCENDING).limit(REFERENCE_POOL))
