"""The ledger's side of a reconciliation, and the `reconciliations` collection.

A reconciliation document (one per provider and UTC day, `_id` "<provider>|<YYYY-MM-DD>", so a
second run replaces the first):
    {provider, date, verdict, reason, checkedAt, tolerance, requestsCompared, filters,
     ledger: counts, reported: counts | None, difference: counts | None,
     models: [{model, verdict, ledger, reported, difference}]}
where counts are {requests, uncachedInputTokens, cachedInputTokens, cacheWriteTokens, outputTokens}
(the ledger's also carry estimatedRequests) and difference = reported - ledger. The `leases`
document "reconciliation:scheduled-run" {until, owner} lets one worker at a time run the scheduled pass.
"""
from datetime import datetime, time, timedelta, timezone

from bson import ObjectId
from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.errors import DuplicateKeyError

from backend.db import LEASES, RECONCILIATIONS, USAGE
from backend.usage.model import F


def ledger_pipeline(day):
    """Active records of one UTC day summed per provider and model. The model is the one the
    server reported (responseModel), which is the name the providers' reports use; records
    without it fall back to the requested modelName. Every outcome is a billed call and counts.
    $sum counts a missing field as 0 and $eq a missing `estimated` as false: OLD_RECORD_DEFAULTS."""
    return [
        {"$match": {F.DATE: day.isoformat(), F.IS_ACTIVE: True}},
        {"$group": {
            "_id": {"provider": f"${F.PROVIDER}", "model": {"$ifNull": [f"${F.RESPONSE_MODEL}", f"${F.MODEL_NAME}"]}},
            "requests": {"$sum": 1},
            "promptTokens": {"$sum": f"${F.PROMPT_TOKENS}"},
            "cachedInputTokens": {"$sum": f"${F.CACHED_INPUT_TOKENS}"},
            "cacheWriteTokens": {"$sum": f"${F.CACHE_WRITE_TOKENS}"},
            "outputTokens": {"$sum": f"${F.COMPLETION_TOKENS}"},
            "estimatedRequests": {"$sum": {"$cond": [{"$eq": [f"${F.ESTIMATED}", True]}, 1, 0]}},
        }},
    ]


def ledger_counts(db, day):
    """{provider: {model: counts}} for one UTC day, uncached input split off the prompt tokens."""
    ledger = {}
    for row in db[USAGE].aggregate(ledger_pipeline(day)):
        ledger.setdefault(row["_id"]["provider"], {})[row["_id"]["model"]] = {
            "requests": row["requests"],
            "uncachedInputTokens": row["promptTokens"] - row["cachedInputTokens"] - row["cacheWriteTokens"],
            "cachedInputTokens": row["cachedInputTokens"],
            "cacheWriteTokens": row["cacheWriteTokens"],
            "outputTokens": row["outputTokens"],
            "estimatedRequests": row["estimatedRequests"],
        }
    return ledger


def _counts(record):
    prompt, cached, written = (record.get(F.PROMPT_TOKENS) or 0, record.get(F.CACHED_INPUT_TOKENS) or 0,
                               record.get(F.CACHE_WRITE_TOKENS) or 0)
    return {"requests": 1, "uncachedInputTokens": prompt - cached - written, "cachedInputTokens": cached,
            "cacheWriteTokens": written, "outputTokens": record.get(F.COMPLETION_TOKENS) or 0,
            "estimatedRequests": 1 if record.get(F.ESTIMATED) else 0}


# A call that started between 2**(k-1) and 2**k seconds before a midnight can cross it only if it
# took more than 2**(k-1) seconds: one query per such window finds every crossing call that took
# up to 2**CROSSING_WINDOWS seconds (68 minutes), reading only candidates.
CROSSING_WINDOWS = 12
LONGEST_CALL_MS = 2 ** CROSSING_WINDOWS * 1000


def _latency_ms(record):
    """A record's latencyMs as a sane number of milliseconds (0 for what is not)."""
    value = record.get(F.LATENCY_MS)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= LONGEST_CALL_MS:
        return 0
    return value


def midnight_calls(db, day):
    """{provider: {"out": calls, "in": calls}}: the calls the ledger dates on `day` (by their
    request's start) that completed on the next UTC day, and those it dates on the day before that
    completed on `day`. A call is {"callId", "model", counts}; it completed at its timestamp plus
    latencyMs."""
    start = datetime.combine(day, time(), tzinfo=timezone.utc)
    moved = {}
    windows = [(0, 1)] + [(2 ** (k - 1), 2 ** k) for k in range(1, CROSSING_WINDOWS + 1)]
    for direction, boundary in (("out", start + timedelta(days=1)), ("in", start)):
        for low, high in windows:
            query = {F.TIMESTAMP: {"$gte": boundary - timedelta(seconds=high), "$lt": boundary - timedelta(seconds=low)},
                     F.IS_ACTIVE: True}
            if low:
                query[F.LATENCY_MS] = {"$gt": low * 1000}
            for record in db[USAGE].find(query):
                if record[F.TIMESTAMP] + timedelta(milliseconds=_latency_ms(record)) >= boundary:
                    calls = moved.setdefault(record[F.PROVIDER], {"out": [], "in": []})[direction]
                    calls.append({"callId": str(record.get(F.CALL_ID) or record["_id"]),
                                  "model": record.get(F.RESPONSE_MODEL) or record.get(F.MODEL_NAME), **_counts(record)})
    return moved


def save(db, result):
    """Store a result in place of any earlier one for the same provider and day."""
    document = {"_id": f"{result['provider']}|{result['date']}", **result}
    try:
        db[RECONCILIATIONS].replace_one({"_id": document["_id"]}, document, upsert=True)
    except DuplicateKeyError:
        # Two workers upserted the same new day at once; the loser replaces the winner's copy.
        db[RECONCILIATIONS].replace_one({"_id": document["_id"]}, document)


def for_day(db, day):
    """{provider: stored result} for one UTC day."""
    return {doc["provider"]: doc for doc in db[RECONCILIATIONS].find({"date": day.isoformat()})}


def in_range(db, start, end, provider=None):
    query = {"date": {"$gte": start.isoformat(), "$lte": end.isoformat()}}
    if provider:
        query["provider"] = provider
    return list(db[RECONCILIATIONS].find(query).sort([("date", DESCENDING), ("provider", ASCENDING)]))


SCHEDULED_LEASE = "reconciliation:scheduled-run"


def take_lease(db, now, length):
    """The scheduled run's lease (its owner token) if no other worker holds it, else None."""
    owner = str(ObjectId())
    try:
        taken = db[LEASES].find_one_and_update(
            {"_id": SCHEDULED_LEASE, "until": {"$lte": now}}, {"$set": {"until": now + length, "owner": owner}},
            return_document=ReturnDocument.AFTER)
        if taken is None:
            db[LEASES].insert_one({"_id": SCHEDULED_LEASE, "until": now + length, "owner": owner})
    except DuplicateKeyError:
        return None  # held (or just taken) by another worker
    return owner


def release_lease(db, owner):
    db[LEASES].update_one({"_id": SCHEDULED_LEASE, "owner": owner}, {"$set": {"until": datetime.min.replace(
        tzinfo=timezone.utc)}})
