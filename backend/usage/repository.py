"""The usage ledger (openai_token_usage): the only code that writes its documents."""
from bson import ObjectId
from pymongo.errors import BulkWriteError

from backend.db import USAGE, USAGE_BATCHES
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


def open_batch(db, batch, call_ids, tickets):
    """Note a batch about to be written: its records' callIds and budget tickets ({callId: ticket}).
    It stays open until every view took it (close_batch)."""
    db[USAGE_BATCHES].insert_one({"_id": batch, "callIds": list(call_ids), "tickets": tickets})


def close_batch(db, batch):
    db[USAGE_BATCHES].delete_one({"_id": batch})


def _open(db, batch_docs):
    """[(batch id, its records in the ledger, its tickets)] for these open batch documents."""
    return [(doc["_id"], list(db[USAGE].find({F.BATCH_ID: doc["_id"]})), doc.get("tickets") or {})
            for doc in batch_docs]


def open_batches_of(db, call_ids):
    """The open batches that wrote any of the ledger records with these callIds."""
    if not call_ids:
        return []
    batches = db[USAGE].distinct(F.BATCH_ID, {F.CALL_ID: {"$in": list(call_ids)}})
    return _open(db, db[USAGE_BATCHES].find({"_id": {"$in": batches}}).sort("_id", 1)) if batches else []


def stale_batches(db, began_by):
    """The open batches begun by `began_by` (a batch id is an ObjectId's hex: its time, to the
    second, is when the batch began)."""
    return _open(db, [doc for doc in db[USAGE_BATCHES].find().sort("_id", 1)
                      if ObjectId(doc["_id"]).generation_time <= began_by])


def open_batch_ids(db):
    return [doc["_id"] for doc in db[USAGE_BATCHES].find({}, {"_id": 1})]


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
