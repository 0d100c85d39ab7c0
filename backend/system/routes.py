"""Health check and the offline assets of the API docs page."""
from flask import Blueprint as FlaskBlueprint
from flask import send_from_directory
from flask_smorest import Blueprint
from marshmallow import Schema, fields
from pymongo.errors import PyMongoError
from swagger_ui_bundle import swagger_ui_path

from backend.db import get_db, store_is_embedded
from backend.errors import ServiceUnavailable
from backend.schemas import envelope, ok

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


@docs_assets.get("/<path:filename>")
def asset(filename):
    return send_from_directory(swagger_ui_path, filename, max_age=86400)
