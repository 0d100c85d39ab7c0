"""The alerts queue. An alert's _id names its threshold crossing, so it is queued once."""
from datetime import timedelta

from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from backend.db import ALERTS, atomic

# A claim older than this belongs to a worker that died while sending.
STALE_CLAIM = timedelta(minutes=5)


def queue(db, alert_id, payload, now):
    """True when this call queued the alert, False when some worker already had."""
    try:
        db[ALERTS].insert_one({"_id": alert_id, "payload": payload, "status": "pending", "attempts": 0,
                               "createdAt": now, "nextAttemptAt": now})
    except DuplicateKeyError:
        return False
    return True


def claim_due(db, now):
    with atomic(db):
        return db[ALERTS].find_one_and_update(
            {"$or": [{"status": "pending", "nextAttemptAt": {"$lte": now}},
                     {"status": "sending", "claimedAt": {"$lte": now - STALE_CLAIM}}]},
            {"$set": {"status": "sending", "claimedAt": now}},
            sort=[("nextAttemptAt", 1)],
            return_document=ReturnDocument.AFTER,
        )


def mark_sent(db, alert_id, now):
    db[ALERTS].update_one({"_id": alert_id}, {"$set": {"status": "sent", "sentAt": now}})


def mark_failed_attempt(db, alert_id, attempts, next_attempt_at, give_up, error):
    db[ALERTS].update_one({"_id": alert_id}, {"$set": {
        "status": "failed" if give_up else "pending", "attempts": attempts,
        "nextAttemptAt": next_attempt_at, "lastError": error[:300],
    }})
