"""The alerts queue. An alert's _id names its threshold crossing, so it is queued once."""
from datetime import timedelta

from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from backend.db import ALERTS, atomic

# A claim older than this belongs to a worker that died while sending.
STALE_CLAIM = timedelta(minutes=5)


def queue(db, alert_id, payload, now, **fields):
    """True when this call queued the alert, False when some worker already had."""
    try:
        db[ALERTS].insert_one({"_id": alert_id, "payload": payload, "status": "pending", "attempts": 0,
                               "createdAt": now, "nextAttemptAt": now, **fields})
    except DuplicateKeyError:
        return False
    return True


def state_of(db, alert_id):
    """The state an alert follows (put), or None when there is no such alert."""
    alert = db[ALERTS].find_one({"_id": alert_id}, {"state": 1})
    return None if alert is None else alert.get("state")


def put(db, alert_id, payload, state, now):
    """An alert that follows a state (e.g. a reconciled day's verdict and numbers): queued when
    first seen, queued again with the new payload whenever `state` changes (a delivery under way
    of the older payload then does not count as sent); nothing when it is unchanged. Returns
    whether it was queued. `state` None with no alert yet queues nothing (nothing to resolve)."""
    with atomic(db):
        current = db[ALERTS].find_one({"_id": alert_id}, {"state": 1, "version": 1})
        if current is None:
            return state is not None and queue(db, alert_id, payload, now, state=state, version=1)
        if current.get("state") == state:
            return False
        db[ALERTS].update_one({"_id": alert_id}, {"$set": {
            "payload": payload, "state": state, "status": "pending", "attempts": 0, "nextAttemptAt": now,
            "updatedAt": now}, "$inc": {"version": 1}})
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


def _same_version(alert):
    """The alert as it was claimed: an update queued meanwhile (put) is not marked by its delivery."""
    return {"_id": alert["_id"], "version": alert.get("version")}


def mark_sent(db, alert, now):
    db[ALERTS].update_one(_same_version(alert), {"$set": {"status": "sent", "sentAt": now}})


def mark_failed_attempt(db, alert, attempts, next_attempt_at, give_up, error):
    db[ALERTS].update_one(_same_version(alert), {"$set": {
        "status": "failed" if give_up else "pending", "attempts": attempts,
        "nextAttemptAt": next_attempt_at, "lastError": error[:300],
    }})
