"""Health check and the offline assets of the API docs page."""
import hmac

from flask import Blueprint as FlaskBlueprint
from flask import Response, current_app, request, send_from_directory
from flask_smorest import Blueprint
from marshmallow import Schema, fields
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pymongo.errors import PyMongoError
from swagger_ui_bundle import swagger_ui_path

from backend.db import get_db, store_is_embedded
from backend.errors import ServiceUnavailable, Unauthorized
from backend.metrics import metrics
from backend.schemas import envelope, ok
from backend.openapi import status_ref

blp = Blueprint("system", __name__, description="Service health")
# Swagger UI served from the swagger-ui-bundle package, so /docs works without a CDN.
docs_assets = FlaskBlueprint("docs_assets", __name__, url_prefix="/docs/assets")


class HealthSchema(Schema):
    status = fields.String()
    database = fields.String()
    store = fields.String()


@blp.get("/health")
@blp.response(200, envelope(HealthSchema))
def health():
    """200 when the database answers a ping, 503 when it does not."""
    store = "embedded (in-memory, not persisted)" if store_is_embedded() else "mongodb"
    try:
        get_db().command("ping")
    except PyMongoError:
        raise ServiceUnavailable(
            "Database unreachable", data={"status": "unhealthy", "database": "down", "store": store}
        ) from None
    return ok({"status": "ok", "database": "up", "store": store}, "Service is healthy")


@blp.get("/metrics")
@blp.response(200)
@blp.alt_response(401, response=status_ref(401), description="METRICS_TOKEN is set and was not sent")
@blp.doc(responses={"200": {"description": "Prometheus text exposition format", "content": {"text/plain": {"schema": {
    "type": "string", "description": f"Prometheus text format ({CONTENT_TYPE_LATEST})"}}}}})
def prometheus_metrics():
    """Prometheus metrics of this process; with METRICS_TOKEN set, send it as a bearer token."""
    token = current_app.config["METRICS_TOKEN"]
    if token and not hmac.compare_digest(request.headers.get("Authorization", ""), f"Bearer {token}"):
        raise Unauthorized("Send the metrics token as Authorization: Bearer <METRICS_TOKEN>")
    return Response(generate_latest(metrics().registry), content_type=CONTENT_TYPE_LATEST)


@docs_assets.get("/<path:filename>")
def asset(filename):
    return send_from_directory(swagger_ui_path, filename, max_age=86400)
