from flask import current_app
from flask_jwt_extended import current_user, jwt_required
from flask_smorest import Blueprint

from backend.auth import services
from backend.auth.schemas import (
    AccessTokenSchema,
    LoginSchema,
    RegisterSchema,
    TokensSchema,
    UserSchema,
)
from backend.clock import now
from backend.db import get_db
from backend.errors import Forbidden
from backend.extensions import limiter
from backend.schemas import envelope, ok
from backend.openapi import status_ref

blp = Blueprint("auth", __name__, url_prefix="/auth", description="Accounts and JWT tokens")
BEARER = [{"bearerAuth": []}]


def _auth_limit():
    return current_app.config["RATELIMIT_AUTH"]


@blp.post("/register")
@limiter.limit(_auth_limit)
@blp.arguments(RegisterSchema)
@blp.response(201, envelope(UserSchema))
@blp.alt_response(403, response=status_ref(403), description="Registration is closed (ALLOW_REGISTRATION=false)")
@blp.alt_response(409, response=status_ref(409), description="An account with this email already exists")
def register(body):
    """Create a user account (role user)."""
    if not current_app.config["ALLOW_REGISTRATION"]:
        raise Forbidden("Registration is closed")
    user = services.register_user(get_db(), body["email"], body["password"], body["name"], now=now())
    return ok(user, "User registered successfully")


@blp.post("/login")
@limiter.limit(_auth_limit)
@blp.arguments(LoginSchema)
@blp.response(200, envelope(TokensSchema))
@blp.alt_response(401, response=status_ref(401), description="Invalid email or password")
def login(body):
    """Exchange email and password for an access and a refresh token."""
    user = services.authenticate(get_db(), body["email"], body["password"])
    return ok({**services.issue_tokens(user), "user": user}, "Login successful")


@blp.post("/refresh")
@jwt_required(refresh=True)
@blp.doc(security=BEARER)
@blp.response(200, envelope(AccessTokenSchema))
def refresh():
    """Trade a refresh token (as the bearer token) for a new access token."""
    return ok({"accessToken": services.refresh_access_token(current_user)}, "Token refreshed")


@blp.get("/me")
@jwt_required()
@blp.doc(security=BEARER)
@blp.response(200, envelope(UserSchema))
def me():
    """The account behind the access token."""
    return ok(current_user.profile(), "Current user")
