"""The usage ledger (openai_token_usage): the only code that writes its documents."""
from pymongo.errors import BulkWriteError

from backend.db import USAGE

DUPLICATE_KEY = 11000


def insert_records(db, records):
    """Insert records and return those inserted; a callId already present is skipped,
    so a retried write never counts twice."""
    if not records:
        return []
    try:
        db[USAGE].insert_many(records, ordered=False)
        return records
    except BulkWriteError as exc:
        errors = exc.details.get("writeErrors", [])
        if any(error.get("code") != DUPLICATE_KEY for error in errors):
            raise
        duplicates = {error["index"] for error in errors}
        return [record for index, record in enumerate(records) if index not in duplicates]


def active_dates(db, query):
    return dates(db, {**query, "isActive": True})


def deactivate(db, query):
    return db[USAGE].update_many({**query, "isActive": True}, {"$set": {"isActive": False}}).modified_count


def count(db, query):
    return db[USAGE].count_documents(query)


def dates(db, query):
    return db[USAGE].distinct("date", query)


def delete(db, query):
    return db[USAGE].delete_many(query).deleted_count
