"""The usage ledger (openai_token_usage): the only code that writes its documents."""
from pymongo.errors import BulkWriteError

from backend.db import USAGE

DUPLICATE_KEY = 11000


def insert_records(db, records):
    """Insert records; a callId already present is skipped, so a retry never counts twice."""
    if not records:
        return 0
    try:
        return len(db[USAGE].insert_many(records, ordered=False).inserted_ids)
    except BulkWriteError as exc:
        errors = exc.details.get("writeErrors", [])
        if any(error.get("code") != DUPLICATE_KEY for error in errors):
            raise
        return exc.details.get("nInserted", 0)
