from flask import Response, stream_with_context
from flask_smorest import Blueprint

from backend.admin import export, repository, services
from backend.admin.schemas import (
    BreakdownItemSchema,
    BreakdownQuerySchema,
    DashboardSchema,
    ExportQuerySchema,
    HistoryQuerySchema,
    SourcedRangeSchema,
    TimeseriesQuerySchema,
    TimeseriesSchema,
    TopUserSchema,
    TopUsersQuerySchema,
    TotalsSchema,
    UsageLogsSchema,
    UsageQuerySchema,
    UsageRecordSchema,
)
from backend.auth.guards import admin_required, caller, current_scope
from backend.clock import now
from backend.db import get_db
from backend.orgs import services as orgs
from backend.timezones import local_date
from backend.schemas import envelope, ok, page_of, parse_object_id
from backend.usage.model import F
from backend.usage.rollups import TAG

blp = Blueprint(
    "admin_openai", __name__, url_prefix="/admin/openai",
    description="Usage analytics for admins: platform admins see every organization, organization admins their own",
)
ADMIN_DOC = {"security": [{"bearerAuth": []}]}
EXPORT_RESPONSE = {
    "description": "CSV (header row first) or NDJSON, streamed, one ledger record per row",
    "content": {
        "text/csv": {"schema": {"type": "string", "description": "format=csv (default); text cells starting with "
                                                                 "=, +, -, @, tab or CR get a leading '"}},
        "application/x-ndjson": {"schema": {"type": "string", "description": "format=ndjson: one object a line"}},
    },
}


def _zone(query):
    """The zone of the answer's days: timeZone=, else the caller's organization's (backend.orgs)."""
    return orgs.view_zone(get_db(), caller._get_current_object(), query.get("time_zone"), query.get("org_id"))


def _filters(query):
    """The equality filters a query carries (absent ones are None and ignored), confined to the
    caller's scope: an organization admin's always name their organization."""
    filters = {F.OPERATION: query.get("operation"), F.PROVIDER: query.get("provider"),
               F.MODEL_NAME: query.get("model"), F.USER_ID: query.get("user_id"), F.OUTCOME: query.get("outcome"),
               F.ORG_ID: query.get("org_id"), F.TEAM_ID: query.get("team_id"), TAG: query.get("tag")}
    return services.confine(get_db(), current_scope(), filters)


@blp.get("/dashboard")
@admin_required
@blp.doc(**ADMIN_DOC)
@blp.arguments(SourcedRangeSchema, location="query")
@blp.response(200, envelope(DashboardSchema))
def dashboard(query):
    """Totals across all users (of the caller's organization, for an organization admin) for an
    inclusive range of local days (see timeZone)."""
    tz, filters = _zone(query), _filters(query)
    data = services.dashboard(get_db(), query.get("start_date"), query.get("end_date"), query["source"], filters, tz)
    data["projection"] = services.projection(get_db(), filters, tz, now())
    return ok(data, "OpenAI usage statistics retrieved successfully", tz.key)


@blp.get("/top-users")
@admin_required
@blp.doc(**ADMIN_DOC)
@blp.arguments(TopUsersQuerySchema, location="query")
@blp.response(200, envelope(TopUserSchema, many=True))
def top_users(query):
    """Users ranked by total tokens (ties broken by user id)."""
    tz = _zone(query)
    data = services.top_users(get_db(), query["limit"], query.get("start_date"), query.get("end_date"),
                              query["source"], _filters(query), current_scope(), tz)
    return ok(data, f"Top {len(data)} users retrieved successfully", tz.key)


@blp.get("/user/<user_id>/stats")
@admin_required
@blp.doc(**ADMIN_DOC)
@blp.arguments(SourcedRangeSchema, location="query")
@blp.response(200, envelope(TotalsSchema))
def user_stats(query, user_id):
    """One user's totals for an inclusive range of local days."""
    uid = parse_object_id(user_id, "userId")
    tz = _zone(query)
    data = services.user_stats(get_db(), uid, query.get("start_date"), query.get("end_date"), query["source"],
                               _filters(query), current_scope(), tz)
    return ok(data, f"Usage statistics for user {user_id} retrieved successfully", tz.key)


@blp.get("/user/<user_id>/history")
@admin_required
@blp.doc(**ADMIN_DOC)
@blp.arguments(HistoryQuerySchema, location="query")
@blp.response(200, envelope(page_of(UsageRecordSchema)))
def user_history(query, user_id):
    """One user's ledger records, newest first, paginated."""
    uid = parse_object_id(user_id, "userId")
    tz = _zone(query)
    data = services.user_history(
        get_db(), uid, query["page"], query["limit"], query.get("start_date"), query.get("end_date"), _filters(query),
        current_scope(), tz,
    )
    return ok(data, f"Usage history for user {user_id} retrieved successfully", tz.key)


@blp.get("/breakdown")
@admin_required
@blp.doc(**ADMIN_DOC)
@blp.arguments(BreakdownQuerySchema, location="query")
@blp.response(200, envelope(BreakdownItemSchema, many=True))
def breakdown(query):
    """Totals per model, provider, operation, outcome, org or team, largest first, with each one's
    share of tokens."""
    tz = _zone(query)
    data = services.breakdown(get_db(), query["by"], query.get("start_date"), query.get("end_date"),
                              _filters(query), query["source"], tz)
    return ok(data, f"Usage by {query['by']} retrieved successfully", tz.key)


@blp.get("/timeseries")
@admin_required
@blp.doc(**ADMIN_DOC)
@blp.arguments(TimeseriesQuerySchema, location="query")
@blp.response(200, envelope(TimeseriesSchema))
def timeseries(query):
    """Tokens by kind, cost and requests per day, week (from Monday) or month, empty buckets as zeros.

    Without dates: the last 30 days. With a groupBy, one series per key.
    """
    tz = _zone(query)
    data = services.timeseries(
        get_db(), query["bucket"], query["group_by"], query.get("start_date"), query.get("end_date"),
        local_date(now(), tz), _filters(query), query["limit"], query["source"], current_scope(), tz,
    )
    return ok(data, "Usage time series retrieved successfully", tz.key)


@blp.get("/usage")
@admin_required
@blp.doc(**ADMIN_DOC)
@blp.arguments(UsageQuerySchema, location="query")
@blp.response(200, envelope(UsageLogsSchema))
def usage_logs(query):
    """Usage logs (seed 002): filtered ledger records, newest first, with statistics per operation."""
    tz = _zone(query)
    data = services.usage_logs(get_db(), _filters(query), query["limit"], query["offset"],
                               query.get("start_date"), query.get("end_date"), query["source"], current_scope(), tz)
    return ok(data, "Usage logs retrieved successfully", tz.key)


@blp.get("/export")
@admin_required
@blp.doc(**ADMIN_DOC)
@blp.arguments(ExportQuerySchema, location="query")
@blp.response(200)
@blp.doc(responses={"200": EXPORT_RESPONSE})
def export_usage(query):
    """Every active ledger record matching the filters, in date order, streamed as CSV or NDJSON."""
    start, end, fmt, tz = query.get("start_date"), query.get("end_date"), query["format"], _zone(query)
    records = repository.export_records(get_db(), services.listed(_filters(query), current_scope()), start, end, tz)
    lines = export.csv_lines(records) if fmt == "csv" else export.ndjson_lines(records)
    return Response(
        stream_with_context(lines),
        mimetype="text/csv" if fmt == "csv" else "application/x-ndjson",
        headers={"Content-Disposition": f'attachment; filename="{export.filename(start, end, fmt)}"',
                 "X-Time-Zone": tz.key},
    )
