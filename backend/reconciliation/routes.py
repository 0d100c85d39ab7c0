from flask_smorest import Blueprint

from backend import clock
from backend.auth.guards import platform_admin_required
from backend.db import get_db
from backend.reconciliation import services
from backend.reconciliation.schemas import (
    ReconciliationListSchema,
    ReconciliationQuerySchema,
)
from backend.schemas import envelope, ok
from backend.timezones import UTC_NAME

blp = Blueprint(
    "reconciliation", __name__, url_prefix="/admin/openai",
    description="The ledger compared with the providers' own usage reports (role admin required)",
)


@blp.get("/reconciliation")
@platform_admin_required
@blp.doc(security=[{"bearerAuth": []}])
@blp.arguments(ReconciliationQuerySchema, location="query")
@blp.response(200, envelope(ReconciliationListSchema))
def reconciliation(query):
    """Reconciliation results per provider and UTC day (default: the last 30 days), mismatches first.

    Each result carries both sides, the difference (reported minus ledger) and the same per model.
    Days are UTC days whatever the organizations' zones (the providers report UTC days): the answer
    says so (`timeZone: "UTC"`).
    """
    data = services.list_results(get_db(), query.get("start_date"), query.get("end_date"), query.get("provider"),
                                 clock.now().date())
    return ok(data, f"{len(data['results'])} reconciliation result(s) retrieved", UTC_NAME)
