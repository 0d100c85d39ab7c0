from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate

from backend.audit.hook import flush
from backend.audit.repository import entries_page
from backend.auth.guards import admin_required, current_scope
from backend.db import get_db
from backend.schemas import (
    MAX_PAGE_SIZE,
    DateRangeSchema,
    ObjectIdString,
    UTCDateTime,
    envelope,
    ok,
    page_field,
    page_of,
)

AUDIT_FLUSH_SECONDS = 2
blp = Blueprint("audit", __name__, url_prefix="/admin/openai", description="Admin audit log (role admin)")


class AuditQuerySchema(DateRangeSchema):
    admin_id = ObjectIdString(data_key="adminId", load_default=None)
    page = page_field()
    limit = fields.Integer(validate=validate.Range(min=1, max=MAX_PAGE_SIZE), load_default=50)


class AuditEntrySchema(Schema):
    id = ObjectIdString(attribute="_id")
    adminId = ObjectIdString(allow_none=True)
    adminEmail = fields.String(allow_none=True)
    orgId = ObjectIdString(allow_none=True, metadata={"description": "the caller's organization; null for a "
                                                                     "platform admin or no caller"})
    method = fields.String()
    path = fields.String()
    query = fields.Dict(keys=fields.String(), values=fields.List(fields.String()))
    truncated = fields.Boolean(dump_default=False,
                               metadata={"description": "the query or path was longer than the log keeps"})
    status = fields.Integer()
    ip = fields.String(allow_none=True)
    time = UTCDateTime()


@blp.get("/audit-log")
@admin_required
@blp.doc(security=[{"bearerAuth": []}])
@blp.arguments(AuditQuerySchema, location="query")
@blp.response(200, envelope(page_of(AuditEntrySchema)))
def audit_log(query):
    """Requests to admin endpoints, newest first; filter by admin and inclusive UTC dates. An
    organization admin sees the requests of their organization's members."""
    # Entries are written in the background; what was answered before this read is in it.
    flush(timeout=AUDIT_FLUSH_SECONDS)
    data = entries_page(get_db(), query["admin_id"], query.get("start_date"), query.get("end_date"),
                        query["page"], query["limit"], current_scope().org_id)
    return ok(data, "Audit log retrieved successfully")
