"""Rollups of the usage ledger, kept by $inc as records are written and rebuilt from it on demand.

- DAILY (openai_token_usage_daily): one document per (date, userId, provider,
  modelName, operation) with summed tokens, cost and requests. Breakdowns, time
  series and usage stats read it.
- USER_MONTHLY (openai_token_usage_user_monthly): one document per (userId, month)
  with the same sums per day in `days.<YYYY-MM-DD>`. The dashboard, top users and
  user stats read it: its size is bounded by users x months, whatever the number
  of calls, so those views stay flat as the ledger grows.
- DAILY_TOTALS (openai_token_usage_daily_totals): DAILY without the user, one document
  per (date, provider, modelName, operation). Time series and breakdowns that are not
  about one user read it: its size is bounded by days x models x operations.

Only active records count. A rollup write that fails after its ledger write is
logged; `check` finds the drift and `rebuild` removes it (scripts/rebuild_rollups.py).
"""
import logging
import math
from collections import defaultdict

from backend.db import USAGE, USAGE_DAILY, USAGE_DAILY_TOTALS, USAGE_USER_MONTHLY, atomic

log = logging.getLogger("backend.usage")

SUMS = ("promptTokens", "completionTokens", "cachedInputTokens", "cacheWriteTokens", "reasoningTokens",
        "totalTokens", "cost")
DAILY_KEY = ("date", "userId", "provider", "modelName", "operation")
TOTALS_KEY = ("date", "provider", "modelName", "operation")
COST_TOLERANCE = 1e-9


def _increments(records):
    """Summed increments per daily key, per totals key and per (userId, month) -> day."""
    daily = defaultdict(lambda: defaultdict(float))
    totals = defaultdict(lambda: defaultdict(float))
    monthly = defaultdict(lambda: defaultdict(float))
    emails = {}
    for record in records:
        if not record.get("isActive", True):
            continue
        day_key = tuple(record[field] for field in DAILY_KEY)
        totals_key = tuple(record[field] for field in TOTALS_KEY)
        month_key = (record["userId"], record["month"])
        emails[record["userId"]] = record["userEmail"]
        for field in SUMS:
            value = record.get(field, 0)
            daily[day_key][field] += value
            totals[totals_key][field] += value
            monthly[month_key][f"days.{record['date']}.{field}"] += value
        daily[day_key]["requests"] += 1
        totals[totals_key]["requests"] += 1
        monthly[month_key][f"days.{record['date']}.requests"] += 1
    return daily, totals, monthly, emails


def _number(field, value):
    return value if field.endswith("cost") else int(value)


def apply(db, records):
    """Add newly written records to the rollups. Raises on a write failure.

    Two first writers of a key race to create it; MongoDB retries such an upsert itself,
    and the embedded store gets the same effect from atomic()."""
    daily, totals, monthly, emails = _increments(records)
    with atomic(db):
        _apply(db, daily, totals, monthly, emails)


def _apply(db, daily, totals, monthly, emails):
    for key, sums in totals.items():
        db[USAGE_DAILY_TOTALS].update_one(
            dict(zip(TOTALS_KEY, key)),
            {"$inc": {field: _number(field, value) for field, value in sums.items()},
             "$setOnInsert": {"month": key[0][:7]}},
            upsert=True,
        )
    for key, sums in daily.items():
        document = dict(zip(DAILY_KEY, key))
        db[USAGE_DAILY].update_one(
            document,
            {
                "$inc": {field: _number(field, value) for field, value in sums.items()},
                "$set": {"userEmail": emails[document["userId"]]},
                "$setOnInsert": {"month": document["date"][:7], "year": int(document["date"][:4])},
            },
            upsert=True,
        )
    for (user_id, month), sums in monthly.items():
        db[USAGE_USER_MONTHLY].update_one(
            {"userId": user_id, "month": month},
            {"$inc": {path: _number(path, value) for path, value in sums.items()},
             "$set": {"userEmail": emails[user_id]}},
            upsert=True,
        )


def user_usage(db, user_id, window, period):
    """(totalTokens, cost) the ledger holds for a user in a UTC day (YYYY-MM-DD) or month (YYYY-MM)."""
    document = db[USAGE_USER_MONTHLY].find_one({"userId": user_id, "month": period[:7]}, {"days": 1}) or {}
    days = document.get("days", {})
    chosen = [days.get(period, {})] if window == "day" else days.values()
    return (sum(int(day.get("totalTokens", 0)) for day in chosen),
            sum(day.get("cost", 0.0) for day in chosen))


def whole_months(start=None, end=None):
    """The ledger filter for whole months covering [start, end] (either may be None)."""
    query = {"isActive": True}
    if start or end:
        query["month"] = {}
        if start:
            query["month"]["$gte"] = start.strftime("%Y-%m")
        if end:
            query["month"]["$lte"] = end.strftime("%Y-%m")
    return query


def expected(db, start=None, end=None):
    """The rollups as the ledger says they should be, for whole months covering the range:
    (daily, totals, user-month) document lists."""
    group_id = {field: f"${field}" for field in DAILY_KEY}
    sums = {field: {"$sum": f"${field}"} for field in SUMS}
    rows = db[USAGE].aggregate([
        {"$match": whole_months(start, end)},
        {"$group": {"_id": group_id, **sums, "requests": {"$sum": 1}, "userEmail": {"$max": "$userEmail"}}},
    ], allowDiskUse=True)
    daily, totals, monthly = [], {}, {}
    for row in rows:
        key = row.pop("_id")
        email = row.pop("userEmail")
        daily.append({**key, "month": key["date"][:7], "year": int(key["date"][:4]), "userEmail": email, **row})
        total = totals.setdefault(tuple(key[field] for field in TOTALS_KEY), {
            **{field: key[field] for field in TOTALS_KEY}, "month": key["date"][:7],
            **{field: 0 for field in (*SUMS, "requests")}})
        for field in (*SUMS, "requests"):
            total[field] += row[field]
        user_month = monthly.setdefault(
            (key["userId"], key["date"][:7]),
            {"userId": key["userId"], "month": key["date"][:7], "userEmail": email, "days": {}},
        )
        day = user_month["days"].setdefault(key["date"], {field: 0 for field in (*SUMS, "requests")})
        for field in (*SUMS, "requests"):
            day[field] += row[field]
    return daily, list(totals.values()), list(monthly.values())


def _month_filter(start, end):
    return {key: value for key, value in whole_months(start, end).items() if key == "month"}


def rebuild(db, start=None, end=None):
    """Replace the rollups for whole months covering [start, end] (all time when open). Idempotent."""
    daily, totals, monthly = expected(db, start, end)
    months = _month_filter(start, end)
    for name, documents in ((USAGE_DAILY, daily), (USAGE_DAILY_TOTALS, totals), (USAGE_USER_MONTHLY, monthly)):
        db[name].delete_many(months)
        if documents:
            db[name].insert_many(documents)
    return {"dailyDocuments": len(daily), "dailyTotalsDocuments": len(totals), "userMonthDocuments": len(monthly)}


def _differs(field, stored, wanted):
    if field.endswith("cost"):
        return not math.isclose(stored, wanted, rel_tol=0, abs_tol=COST_TOLERANCE)
    return stored != wanted


def _compare(kind, key, stored, wanted, fields):
    problems = []
    for field in fields:
        have, want = (stored or {}).get(field, 0), (wanted or {}).get(field, 0)
        if _differs(field, have, want):
            problems.append({"rollup": kind, "key": key, "field": field, "stored": have, "expected": want})
    return problems


def _compare_keyed(kind, key_fields, stored, wanted):
    """Differences between two lists of flat rollup documents matched on their key fields."""
    def key_of(document):
        return tuple(str(document[field]) for field in key_fields)

    stored_by_key = {key_of(document): document for document in stored}
    wanted_by_key = {key_of(document): document for document in wanted}
    problems = []
    for key in sorted(stored_by_key.keys() | wanted_by_key.keys()):
        problems += _compare(kind, "/".join(key), stored_by_key.get(key), wanted_by_key.get(key),
                             (*SUMS, "requests"))
    return problems


def check(db, start=None, end=None):
    """Every difference between the stored rollups and the ledger, for whole months covering the range."""
    daily, totals, monthly = expected(db, start, end)
    months = _month_filter(start, end)
    problems = _compare_keyed("daily", DAILY_KEY, db[USAGE_DAILY].find(months), daily)
    problems += _compare_keyed("daily_totals", TOTALS_KEY, db[USAGE_DAILY_TOTALS].find(months), totals)
    stored_monthly = {(str(d["userId"]), d["month"]): d for d in db[USAGE_USER_MONTHLY].find(months)}
    wanted_monthly = {(str(d["userId"]), d["month"]): d for d in monthly}
    for key in sorted(stored_monthly.keys() | wanted_monthly.keys()):
        stored_days = (stored_monthly.get(key) or {}).get("days", {})
        wanted_days = (wanted_monthly.get(key) or {}).get("days", {})
        for day in sorted(stored_days.keys() | wanted_days.keys()):
            problems += _compare("user_monthly", f"{key[0]}/{day}", stored_days.get(day), wanted_days.get(day),
                                 (*SUMS, "requests"))
    return problems
