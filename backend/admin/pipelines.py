"""Aggregation pipelines as pure data. Each runs on MongoDB and on mongomock.

Three sources answer the same questions:
- RAW: the ledger itself (active records only; each record is one request);
- DAILY: the (date, userId, provider, modelName, operation) rollup;
- USER_MONTHLY: the (userId, month) rollup, unwound to one row per user and day.
Dates filter on stored `YYYY-MM-DD` strings, so ranges are inclusive whole UTC days
and need no date operators mongomock lacks.
"""
RAW, DAILY, USER_MONTHLY = "raw", "daily", "user_monthly"
SUMMED_FIELDS = ("totalTokens", "promptTokens", "completionTokens", "cachedInputTokens", "cacheWriteTokens",
                 "reasoningTokens")
GROUP_FIELDS = {"model": "modelName", "provider": "provider", "operation": "operation", "user": "userId"}


def _date_range(start, end):
    condition = {}
    if start:
        condition["$gte"] = start.isoformat()
    if end:
        condition["$lte"] = end.isoformat()
    return condition


def match(source, start=None, end=None, filters=None):
    """$match for RAW or DAILY: the inclusive day range plus equality filters (userId, provider, ...)."""
    query = {"isActive": True} if source == RAW else {}
    if start or end:
        query["date"] = _date_range(start, end)
    query.update({field: value for field, value in (filters or {}).items() if value is not None})
    return {"$match": query}


def _user_days(start=None, end=None, user_id=None):
    """USER_MONTHLY as rows of {userId, userEmail, day: {k: date, v: sums}} within the range."""
    query = {}
    if start or end:
        query["month"] = {key: value[:7] for key, value in _date_range(start, end).items()}
    if user_id is not None:
        query["userId"] = user_id
    stages = [
        {"$match": query},
        {"$project": {"userId": 1, "userEmail": 1, "day": {"$objectToArray": "$days"}}},
        {"$unwind": "$day"},
    ]
    if start or end:
        stages.append({"$match": {"day.k": _date_range(start, end)}})
    return stages


def _sums(source):
    """Sums of one source's rows: tokens, totalCost, totalRequests."""
    prefix = "$day.v." if source == USER_MONTHLY else "$"
    sums = {field: {"$sum": f"{prefix}{field}"} for field in SUMMED_FIELDS}
    sums["totalCost"] = {"$sum": f"{prefix}cost"}
    sums["totalRequests"] = {"$sum": 1 if source == RAW else f"{prefix}requests"}
    return sums


def _sums_of_groups():
    return {field: {"$sum": f"${field}"} for field in (*SUMMED_FIELDS, "totalCost", "totalRequests")}


def _rows(source, start, end, user_id=None):
    if source == USER_MONTHLY:
        return _user_days(start, end, user_id)
    return [match(source, start, end, {"userId": user_id})]


def dashboard_pipeline(source, start=None, end=None):
    """Totals over the range; grouping by user first makes uniqueUsers a count, not a set."""
    return [
        *_rows(source, start, end),
        {"$group": {"_id": "$userId", **_sums(source)}},
        {"$group": {"_id": None, **_sums_of_groups(), "uniqueUsers": {"$sum": 1}}},
    ]


def top_users_pipeline(source, limit, start=None, end=None):
    return [
        *_rows(source, start, end),
        {"$group": {"_id": "$userId", "userEmail": {"$max": "$userEmail"}, **_sums(source)}},
        {"$sort": {"totalTokens": -1, "_id": 1}},
        {"$limit": limit},
    ]


def user_stats_pipeline(source, user_id, start=None, end=None):
    return [
        *_rows(source, start, end, user_id),
        {"$group": {"_id": None, **_sums(source)}},
    ]


def breakdown_pipeline(source, by, start=None, end=None, user_id=None):
    """Totals per model (with its provider), provider or operation, largest first."""
    key = {"provider": "$provider", "modelName": "$modelName"} if by == "model" else {by: f"${GROUP_FIELDS[by]}"}
    return [
        match(source, start, end, {"userId": user_id}),
        {"$group": {"_id": key, **_sums(source)}},
        {"$sort": {"totalTokens": -1, "_id": 1}},
    ]


def timeseries_pipeline(source, group_by, start=None, end=None, user_id=None):
    """Totals per day (and per group key); services fold days into weeks or months."""
    group_id = {"date": "$date"}
    extra = {}
    if group_by != "none":
        group_id["key"] = f"${GROUP_FIELDS[group_by]}"
        if group_by == "user":
            extra["label"] = {"$max": "$userEmail"}
    return [
        match(source, start, end, {"userId": user_id}),
        {"$group": {"_id": group_id, **_sums(source), **extra}},
    ]


def usage_stats_pipeline(start=None, end=None, filters=None):
    """Seed 002's statistics grouped by operation (its "type"), from the DAILY rollup."""
    return [
        match(DAILY, start, end, filters),
        {"$group": {"_id": "$operation", **_sums(DAILY)}},
        {"$sort": {"_id": 1}},
    ]
