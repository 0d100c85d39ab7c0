"""Aggregation pipelines as pure data. Each runs on MongoDB and on mongomock.

Six sources answer the same questions:
- RAW: the ledger itself (active records only; each record is one request);
- DAILY: the (date, userId, provider, modelName, operation) rollup;
- TOTALS: the (date, provider, modelName, operation, outcome) rollup, for questions not about users;
- USER_MONTHLY: the (userId, month) rollup with per-day sums, and USER_OPERATION_MONTHLY,
  the same per (userId, month, provider, operation) for views filtered by operation or
  provider. They are read with a plain query for the months in range (user_month_query)
  and the days in range are summed per user in the service: mongomock's $unwind deep-copies
  the whole document for every element, and on MongoDB the indexed find is as cheap as a
  pipeline.
- TAGS: the (date, tag, userId, provider, modelName, operation, outcome, orgId, teamId) rollup,
  for views filtered or broken down by tag.
Dates filter on stored `YYYY-MM-DD` strings, so ranges are inclusive whole UTC days
and need no date operators mongomock lacks.
"""
RAW, DAILY, TOTALS, TAGS = "raw", "daily", "daily_totals", "daily_tags"
USER_MONTHLY, USER_OPERATION_MONTHLY = "user_monthly", "user_operation_monthly"
SUMMED_FIELDS = ("totalTokens", "promptTokens", "completionTokens", "cachedInputTokens", "cacheWriteTokens",
                 "reasoningTokens")
GROUP_FIELDS = {"model": "modelName", "provider": "provider", "operation": "operation", "user": "userId",
                "outcome": "outcome", "org": "orgId", "team": "teamId", "tag": "tag"}


def _date_range(start, end):
    condition = {}
    if start:
        condition["$gte"] = start.isoformat()
    if end:
        condition["$lte"] = end.isoformat()
    return condition


def match(source, start=None, end=None, filters=None):
    """$match for RAW or a daily rollup: the inclusive day range plus equality filters (userId,
    provider, ...). `tag` is the TAGS rollup's key field; on the ledger it matches an element of `tags`."""
    query = {"isActive": True} if source == RAW else {}
    if start or end:
        query["date"] = _date_range(start, end)
    for field, value in (filters or {}).items():
        if value is not None:
            query["tags" if field == "tag" and source == RAW else field] = value
    return {"$match": query}


def user_month_query(start=None, end=None, user_id=None, filters=None):
    """(filter, projection) reading USER_MONTHLY (or, with operation/provider filters,
    USER_OPERATION_MONTHLY) for the months the range touches. Whole months are read and the
    caller keeps the days inside the range: a projection naming each day would grow with the
    range (0001-01-01..9999-12-31 is 3.65M keys), while whole months cost what the data holds."""
    query = {}
    if start or end:
        query["month"] = {key: value[:7] for key, value in _date_range(start, end).items()}
    if user_id is not None:
        query["userId"] = user_id
    query.update(filters or {})
    return query, {"_id": 0, "userId": 1, "userEmail": 1, "days": 1}


def _sums(source):
    """Sums of one source's rows: tokens, totalCost, totalRequests."""
    sums = {field: {"$sum": f"${field}"} for field in SUMMED_FIELDS}
    sums["totalCost"] = {"$sum": "$cost"}
    sums["totalRequests"] = {"$sum": 1 if source == RAW else "$requests"}
    return sums


def _sums_of_groups():
    return {field: {"$sum": f"${field}"} for field in (*SUMMED_FIELDS, "totalCost", "totalRequests")}


def dashboard_pipeline(start=None, end=None, filters=None, source=RAW):
    """RAW (or DAILY) totals over the range; grouping by user first makes uniqueUsers a count, not a set."""
    return [
        match(source, start, end, filters),
        {"$group": {"_id": "$userId", **_sums(source)}},
        {"$group": {"_id": None, **_sums_of_groups(), "uniqueUsers": {"$sum": 1}}},
    ]


def top_users_pipeline(limit, start=None, end=None, filters=None, source=RAW):
    return [
        match(source, start, end, filters),
        {"$group": {"_id": "$userId", "userEmail": {"$max": "$userEmail"}, **_sums(source)}},
        {"$sort": {"totalTokens": -1, "_id": 1}},
        {"$limit": limit},
    ]


def user_stats_pipeline(user_id, start=None, end=None, filters=None, source=RAW):
    return [
        match(source, start, end, {**(filters or {}), "userId": user_id}),
        {"$group": {"_id": None, **_sums(source)}},
    ]


def breakdown_pipeline(source, by, start=None, end=None, filters=None):
    """Totals per model (with its provider), provider, operation, outcome, org, team or tag,
    largest first. By tag on the ledger, a record counts once under each of its tags."""
    key = {"provider": "$provider", "modelName": "$modelName"} if by == "model" else {by: f"${GROUP_FIELDS[by]}"}
    unwind = []
    if by == "tag" and source == RAW:
        key, unwind = {"tag": "$tags"}, [{"$unwind": "$tags"}]
    return [
        match(source, start, end, filters),
        *unwind,
        {"$group": {"_id": key, **_sums(source)}},
        {"$sort": {"totalTokens": -1, "_id": 1}},
    ]


def timeseries_pipeline(source, group_by, start=None, end=None, filters=None):
    """Totals per day (and per group key); services fold days into weeks or months."""
    group_id = {"date": "$date"}
    extra = {}
    if group_by != "none":
        group_id["key"] = f"${GROUP_FIELDS[group_by]}"
        if group_by == "user":
            extra["label"] = {"$max": "$userEmail"}
    return [
        match(source, start, end, filters),
        {"$group": {"_id": group_id, **_sums(source), **extra}},
    ]


def usage_stats_pipeline(source, start=None, end=None, filters=None):
    """Seed 002's statistics grouped by operation (its "type"), from a rollup."""
    return [
        match(source, start, end, filters),
        {"$group": {"_id": "$operation", **_sums(source)}},
        {"$sort": {"_id": 1}},
    ]
