"""JWT wiring and the admin guards: identity is the user id, roles are read from the store.

Two kinds of admin use the admin API: platform admins (role `admin`) see everything, and
organization admins (orgRole `admin`) see their organization only (backend.orgs.services.Scope).
"""
from functools import wraps

from bson import ObjectId
from bson.errors import InvalidId
from flask_jwt_extended import current_user, jwt_required

from backend.auth import repository
from backend.db import get_db
from backend.errors import Forbidden, error_response
from backend.extensions import jwt
from backend.orgs.services import scope_of


@jwt.user_lookup_loader
def _load_user(_header, payload):
    try:
        user_id = ObjectId(payload["sub"])
    except (InvalidId, TypeError, KeyError):
        return None
    user = repository.find_with_budgets(get_db(), user_id)
    if user is None or not user.get("isActive", True):
        return None
    return user


@jwt.user_lookup_error_loader
def _unknown_user(_header, _payload):
    return error_response(401, "The account for this token no longer exists or is disabled")


@jwt.unauthorized_loader
def _missing_token(reason):
    return error_response(401, "Authentication required: send Authorization: Bearer <token>")


@jwt.invalid_token_loader
def _invalid_token(reason):
    return error_response(401, f"Invalid token: {reason}")


@jwt.expired_token_loader
def _expired_token(_header, _payload):
    return error_response(401, "Token has expired")


@jwt.revoked_token_loader
def _revoked_token(_header, _payload):
    return error_response(401, "Token has been revoked")


@jwt.needs_fresh_token_loader
def _stale_token(_header, _payload):
    return error_response(401, "A fresh token is required")


def current_scope():
    """The signed-in admin's scope (None for an account that is no admin)."""
    return scope_of(current_user)


def admin_required(view):
    """401 without a valid token, 403 unless the account is a platform or organization admin."""

    @wraps(view)
    @jwt_required()
    def wrapper(*args, **kwargs):
        if current_scope() is None:
            raise Forbidden("Admin role required")
        return view(*args, **kwargs)

    return wrapper


def platform_admin_required(view):
    """As admin_required, and 403 for an organization admin: what spans organizations."""

    @wraps(view)
    @admin_required
    def wrapper(*args, **kwargs):
        if not current_scope().platform:
            raise Forbidden("Platform admin role required")
        return view(*args, **kwargs)

    return wrapper
