from flask_smorest import Blueprint

from backend.admin import services
from backend.admin.schemas import (
    DashboardSchema,
    HistoryQuerySchema,
    TopUserSchema,
    TopUsersQuerySchema,
    TotalsSchema,
    UsageRecordSchema,
)
from backend.auth.guards import admin_required
from backend.db import get_db
from backend.schemas import DateRangeSchema, envelope, ok, page_of, parse_object_id

blp = Blueprint(
    "admin_openai", __name__, url_prefix="/admin/openai",
    description="Usage analytics for admins (role admin required)",
)
ADMIN_DOC = {"security": [{"bearerAuth": []}]}


@blp.get("/dashboard")
@admin_required
@blp.doc(**ADMIN_DOC)
@blp.arguments(DateRangeSchema, location="query")
@blp.response(200, envelope(DashboardSchema))
def dashboard(query):
    """Totals across all users for an inclusive UTC date range."""
    data = services.dashboard(get_db(), query.get("start_date"), query.get("end_date"))
    return ok(data, "OpenAI usage statistics retrieved successfully")


@blp.get("/top-users")
@admin_required
@blp.doc(**ADMIN_DOC)
@blp.arguments(TopUsersQuerySchema, location="query")
@blp.response(200, envelope(TopUserSchema, many=True))
def top_users(query):
    """Users ranked by total tokens (ties broken by user id)."""
    data = services.top_users(get_db(), query["limit"], query.get("start_date"), query.get("end_date"))
    return ok(data, f"Top {len(data)} users retrieved successfully")


@blp.get("/user/<user_id>/stats")
@admin_required
@blp.doc(**ADMIN_DOC)
@blp.arguments(DateRangeSchema, location="query")
@blp.response(200, envelope(TotalsSchema))
def user_stats(query, user_id):
    """One user's totals for an inclusive UTC date range."""
    uid = parse_object_id(user_id, "userId")
    data = services.user_stats(get_db(), uid, query.get("start_date"), query.get("end_date"))
    return ok(data, f"Usage statistics for user {user_id} retrieved successfully")


@blp.get("/user/<user_id>/history")
@admin_required
@blp.doc(**ADMIN_DOC)
@blp.arguments(HistoryQuerySchema, location="query")
@blp.response(200, envelope(page_of(UsageRecordSchema)))
def user_history(query, user_id):
    """One user's ledger records, newest first, paginated."""
    uid = parse_object_id(user_id, "userId")
    data = services.user_history(
        get_db(), uid, query["page"], query["limit"], query.get("start_date"), query.get("end_date")
    )
    return ok(data, f"Usage history for user {user_id} retrieved successfully")
