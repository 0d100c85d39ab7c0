"""Aggregation pipelines as pure data. Each runs on MongoDB and on mongomock.

Dates filter on the stored `date` string (YYYY-MM-DD, UTC), so ranges are
inclusive whole days and need no date operators mongomock lacks.
"""
SUMMED_FIELDS = ("totalTokens", "promptTokens", "completionTokens", "cachedInputTokens", "reasoningTokens")


def active_match(start=None, end=None, user_id=None):
    match = {"isActive": True}
    if start or end:
        match["date"] = {}
        if start:
            match["date"]["$gte"] = start.isoformat()
        if end:
            match["date"]["$lte"] = end.isoformat()
    if user_id is not None:
        match["userId"] = user_id
    return {"$match": match}


def _sums_of_records():
    sums = {field: {"$sum": f"${field}"} for field in SUMMED_FIELDS}
    sums["totalCost"] = {"$sum": "$cost"}
    sums["totalRequests"] = {"$sum": 1}
    return sums


def _sums_of_groups():
    return {field: {"$sum": f"${field}"} for field in (*SUMMED_FIELDS, "totalCost", "totalRequests")}


def dashboard_pipeline(start=None, end=None):
    """Totals over the range; grouping by user first makes uniqueUsers a count, not a set."""
    return [
        active_match(start, end),
        {"$group": {"_id": "$userId", **_sums_of_records()}},
        {"$group": {"_id": None, **_sums_of_groups(), "uniqueUsers": {"$sum": 1}}},
    ]


def top_users_pipeline(limit, start=None, end=None):
    return [
        active_match(start, end),
        {"$group": {"_id": "$userId", "userEmail": {"$max": "$userEmail"}, **_sums_of_records()}},
        {"$sort": {"totalTokens": -1, "_id": 1}},
        {"$limit": limit},
    ]


def user_stats_pipeline(user_id, start=None, end=None):
    return [
        active_match(start, end, user_id),
        {"$group": {"_id": None, **_sums_of_records()}},
    ]
