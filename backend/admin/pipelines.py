"""Aggregation pipelines as pure data, for the ledger (RAW) and the daily rollups. Each runs on
MongoDB and on mongomock; backend/admin/sources.py decides which source a view reads.

Dates filter on stored `YYYY-MM-DD` strings, so ranges are inclusive whole UTC days
and need no date operators mongomock lacks.
"""
from backend.usage.model import F
from backend.usage.rollups import TAG

RAW = "raw"
SUMMED_FIELDS = (F.TOTAL_TOKENS, F.PROMPT_TOKENS, F.COMPLETION_TOKENS, F.CACHED_INPUT_TOKENS, F.CACHE_WRITE_TOKENS,
                 F.REASONING_TOKENS)
# A view's group (`by`, `groupBy`) as the record field it groups on.
GROUP_FIELDS = {"model": F.MODEL_NAME, "provider": F.PROVIDER, "operation": F.OPERATION, "user": F.USER_ID,
                "outcome": F.OUTCOME, "org": F.ORG_ID, "team": F.TEAM_ID, "tag": TAG}


def date_range(start, end):
    condition = {}
    if start:
        condition["$gte"] = start.isoformat()
    if end:
        condition["$lte"] = end.isoformat()
    return condition


def match(source, start=None, end=None, filters=None):
    """$match for RAW or a daily rollup: the inclusive day range plus equality filters (userId,
    provider, ...). `tag` is the tag rollups' key field; on the ledger it matches an element of `tags`."""
    query = {F.IS_ACTIVE: True} if source == RAW else {}
    if start or end:
        query[F.DATE] = date_range(start, end)
    for field, value in (filters or {}).items():
        if value is not None:
            query[F.TAGS if field == TAG and source == RAW else field] = value
    return {"$match": query}


def _sums(source):
    """Sums of one source's rows: tokens, totalCost, totalRequests."""
    sums = {field: {"$sum": f"${field}"} for field in SUMMED_FIELDS}
    sums["totalCost"] = {"$sum": f"${F.COST}"}
    sums["totalRequests"] = {"$sum": 1 if source == RAW else "$requests"}
    return sums


def group_pipeline(source, fields, start=None, end=None, filters=None):
    """Totals per distinct value of `fields` (none: one row); with userId, the user's email too.
    Grouped by tag on the ledger, a record counts once under each of its tags (only under the
    filtered one, when a tag filters too)."""
    group_id = {field: f"${field}" for field in fields}
    stages = [match(source, start, end, filters)]
    if TAG in fields and source == RAW:
        group_id[TAG] = f"${F.TAGS}"
        stages.append({"$unwind": f"${F.TAGS}"})
        if (filters or {}).get(TAG) is not None:
            stages.append({"$match": {F.TAGS: filters[TAG]}})
    extra = {F.USER_EMAIL: {"$max": f"${F.USER_EMAIL}"}} if F.USER_ID in fields else {}
    stages.append({"$group": {"_id": group_id, **_sums(source), **extra}})
    return stages
