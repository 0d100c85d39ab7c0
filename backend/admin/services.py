"""Admin analytics over the usage ledger."""
import math

from backend.admin import pipelines, repository
from backend.auth.repository import find_by_id
from backend.errors import NotFound
from backend.pricing.services import COST_DECIMALS

EMPTY_TOTALS = {
    **{field: 0 for field in pipelines.SUMMED_FIELDS},
    "totalCost": 0.0,
    "totalRequests": 0,
}


def _tidy(row):
    """Drop the group key and round the summed cost back to the ledger's exact precision."""
    row = {key: value for key, value in row.items() if key != "_id"}
    row["totalCost"] = round(row["totalCost"], COST_DECIMALS)
    return row


def dashboard(db, start=None, end=None):
    rows = repository.aggregate(db, pipelines.dashboard_pipeline(start, end))
    return _tidy(rows[0]) if rows else {**EMPTY_TOTALS, "uniqueUsers": 0}


def top_users(db, limit, start=None, end=None):
    rows = repository.aggregate(db, pipelines.top_users_pipeline(limit, start, end))
    return [{"_id": row["_id"], **_tidy(row)} for row in rows]


def require_known_user(db, user_id):
    if find_by_id(db, user_id) is None and not repository.user_has_records(db, user_id):
        raise NotFound(f"User {user_id} not found")


def user_stats(db, user_id, start=None, end=None):
    require_known_user(db, user_id)
    rows = repository.aggregate(db, pipelines.user_stats_pipeline(user_id, start, end))
    return _tidy(rows[0]) if rows else dict(EMPTY_TOTALS)


def user_history(db, user_id, page, limit, start=None, end=None):
    require_known_user(db, user_id)
    records, total = repository.history_page(db, user_id, (page - 1) * limit, limit, start, end)
    return {
        "data": records,
        "total": total,
        "page": page,
        "limit": limit,
        "totalPages": math.ceil(total / limit),
    }
