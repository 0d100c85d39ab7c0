"""The usage ledger (openai_token_usage): the only code that writes its documents."""
from bson import ObjectId
from pymongo.errors import BulkWriteError

from backend.db import USAGE
from backend.usage.model import F

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


def unsettled(db, call_ids):
    """Those of the records with these callIds that a write stopped before settling."""
    return list(db[USAGE].find({F.CALL_ID: {"$in": list(call_ids)}, F.SETTLED: False})) if call_ids else []


def unsettled_batches(db, began_by):
    """{batch id: its records} of the records a write stopped before settling, for batches begun
    by `began_by` (a batch id is an ObjectId: its time, to the second, is when the batch began)."""
    batches = {}
    for record in db[USAGE].find({F.SETTLED: False}).sort(F.BATCH_ID, 1):
        if ObjectId(record[F.BATCH_ID]).generation_time <= began_by:
            batches.setdefault(record[F.BATCH_ID], []).append(record)
    return batches


def mark_settled(db, call_ids):
    db[USAGE].update_many({F.CALL_ID: {"$in": list(call_ids)}},
                          {"$set": {F.SETTLED: True}, "$unset": {F.SETTLEMENT: ""}})


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
