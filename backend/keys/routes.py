from flask_jwt_extended import current_user, jwt_required
from flask_smorest import Blueprint

from backend.clock import now
from backend.db import get_db
from backend.keys import services
from backend.keys.schemas import KeyInputSchema, KeySchema, NewKeySchema
from backend.schemas import envelope, ok, parse_object_id

blp = Blueprint("keys", __name__, url_prefix="/api/keys",
                description="API keys for services and CI (managed with an access token, never with a key)")
BEARER = {"security": [{"bearerAuth": []}]}


@blp.post("")
@jwt_required()
@blp.doc(**BEARER)
@blp.arguments(KeyInputSchema)
@blp.response(201, envelope(NewKeySchema))
def create_key(body):
    """Create a key of yours; its secret is in this answer only. Send it as `Authorization: Bearer tl_...`."""
    key = services.create_key(get_db(), current_user, body["name"], body.get("team_id"), body["expires_at"], now(),
                              keep_team="team_id" not in body)
    return ok(key, "API key created: store the secret now, it is not shown again")


@blp.get("")
@jwt_required()
@blp.doc(**BEARER)
@blp.response(200, envelope(KeySchema, many=True))
def list_keys():
    """The keys you manage: yours; an organization admin's, the organization's; a platform admin's, all."""
    return ok(services.list_keys(get_db(), current_user), "API keys retrieved")


@blp.delete("/<key_id>")
@jwt_required()
@blp.doc(**BEARER)
@blp.response(200, envelope())
def revoke_key(key_id):
    """Revoke a key you manage: refused from the next request on."""
    services.revoke_key(get_db(), current_user, parse_object_id(key_id, "keyId"), now())
    return ok(None, "API key revoked")
