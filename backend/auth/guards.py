"""JWT wiring and the guards: identity is the user id, the `Caller` is read from the store once
per request.

Two kinds of admin use the admin API: platform admins (role `admin`) see everything, and
organization admins (orgRole `admin`) see their organization only (backend.auth.caller.Scope).
API keys are authenticated by the function the keys package registers on the runtime.
"""
from dataclasses import replace
from functools import wraps

from bson import ObjectId
from bson.errors import InvalidId
from flask import g, request
from flask_jwt_extended import current_user, get_current_user, jwt_required
from werkzeug.local import LocalProxy

from backend.auth import repository
from backend.auth.caller import API_KEY_PREFIX
from backend.clock import now
from backend.db import get_db
from backend.errors import Forbidden, error_response
from backend.extensions import jwt
from backend.runtime import runtime

# The Caller a user endpoint acts for: the owner of the API key the request came with (as the key
# acts: its team, its `api_key_id`), else the signed-in user of the access token.
caller = LocalProxy(lambda: g.get("key_caller") or get_current_user())


@jwt.user_lookup_loader
def _load_user(_header, payload):
    try:
        user_id = ObjectId(payload["sub"])
    except (InvalidId, TypeError, KeyError):
        return None
    found = repository.find_caller(get_db(), user_id)
    if found is None or not found.is_active:
        return None
    return found


@jwt.user_lookup_error_loader
def _unknown_user(_header, _payload):
    return error_response(401, "The account for this token no longer exists or is disabled")


@jwt.unauthorized_loader
def _missing_token(reason):
    return error_response(401, "Authentication required: send Authorization: Bearer <token>")


@jwt.invalid_token_loader
def _invalid_token(reason):
    if _api_key() is not None:
        return error_response(401, "API keys are not accepted here: this endpoint needs a signed-in user's "
                                   "access token (POST /auth/login)")
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


def _api_key():
    """The API key the request carries as its bearer token, if it carries one."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip().startswith(API_KEY_PREFIX) else None


def user_required(view):
    """401 without a valid access token or API key (`Authorization: Bearer tl_...`): the
    endpoints services and CI call (generation, estimates, token info, test cases, their usage).
    Read the caller through `caller`."""
    with_token = jwt_required()(view)

    @wraps(view)
    def wrapper(*args, **kwargs):
        secret = _api_key()
        if secret is None:
            return with_token(*args, **kwargs)
        g.key_caller = runtime().key_authenticator(get_db(), secret, now())
        return view(*args, **kwargs)

    return wrapper


def caller_id():
    """The rate-limit key: the user (a key counts as its owner)."""
    return str(caller.id)


def current_scope():
    """The signed-in admin's scope (None for an account that is no admin); an organization admin's
    hides the platform admins. Read once per request."""
    if "admin_scope" not in g:
        scope = current_user.scope
        if scope is not None and not scope.platform:
            scope = replace(scope, hidden_users=repository.platform_admin_ids(get_db()))
        g.admin_scope = scope
    return g.admin_scope


def admin_required(view):
    """401 without a valid token, 403 unless the account is a platform or organization admin.
    API keys are never accepted here (403): admin work needs a signed-in admin."""

    @jwt_required()
    def signed_in(*args, **kwargs):
        if current_scope() is None:
            raise Forbidden("Admin role required")
        return view(*args, **kwargs)

    @wraps(view)
    def wrapper(*args, **kwargs):
        if _api_key() is not None:
            raise Forbidden("API keys are not accepted on admin endpoints: sign in as an admin")
        return signed_in(*args, **kwargs)

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
