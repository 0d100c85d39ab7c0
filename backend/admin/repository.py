"""Reads of the usage ledger for the admin views."""
from pymongo import DESCENDING

from backend.admin.pipelines import active_match
from backend.db import USAGE


def aggregate(db, pipeline):
    return list(db[USAGE].aggregate(pipeline))


def user_has_records(db, user_id):
    return db[USAGE].find_one({"userId": user_id}, {"_id": 1}) is not None


def history_page(db, user_id, skip, limit, start=None, end=None):
    query = active_match(start, end, user_id)["$match"]
    total = db[USAGE].count_documents(query)
    cursor = (
        db[USAGE]
        .find(query)
        .sort([("timestamp", DESCENDING), ("_id", DESCENDING)])
        .skip(skip)
        .limit(limit)
    )
    return list(cursor), total
