"""Registration, credentials and admin bootstrap: plain functions over the users collection."""
from flask_jwt_extended import create_access_token, create_refresh_token
from werkzeug.security import check_password_hash, generate_password_hash

from backend.auth import repository
from backend.auth.caller import ROLE_ADMIN, ROLE_USER
from backend.errors import Conflict, Unauthorized

# Checked when the email is unknown so a miss costs as long as a wrong password.
_DUMMY_HASH = generate_password_hash("not-a-real-password")


def register_user(db, email, password, name=None, role=ROLE_USER, *, now):
    try:
        return repository.insert_user(db, email, generate_password_hash(password), name, role, now)
    except repository.EmailTaken:
        raise Conflict("An account with this email already exists", errors={"email": ["Already registered."]}) from None


def authenticate(db, email, password):
    user = repository.find_by_email(db, email)
    password_hash = user["passwordHash"] if user else _DUMMY_HASH
    password_ok = check_password_hash(password_hash, password)
    if user is None or not password_ok or not user.get("isActive", True):
        raise Unauthorized("Invalid email or password")
    return user


def issue_tokens(user):
    identity = str(user["_id"])
    claims = {"email": user["email"], "role": user["role"]}
    return {
        "accessToken": create_access_token(identity=identity, additional_claims=claims),
        "refreshToken": create_refresh_token(identity=identity, additional_claims=claims),
    }


def refresh_access_token(caller):
    claims = {"email": caller.email, "role": caller.role}
    return create_access_token(identity=str(caller.id), additional_claims=claims)


def ensure_admin(db, email, password, *, now):
    """The bootstrap admin (ADMIN_EMAIL): created once however many workers start at the same time.

    Returns (user, "created" | "exists" | "not-admin"). An existing account that is not an
    active admin is left exactly as it is: promoting someone is create-admin's explicit job,
    never a side effect of a setting.
    """
    user = repository.find_by_email(db, email)
    if user is None:
        try:
            return repository.insert_user(db, email, generate_password_hash(password), "Administrator",
                                          ROLE_ADMIN, now), "created"
        except repository.EmailTaken:
            # Another worker starting at the same moment inserted it first (unique index on email).
            user = repository.find_by_email(db, email)
    if user["role"] == ROLE_ADMIN and user.get("isActive", True):
        return user, "exists"
    return user, "not-admin"


def create_or_promote_admin(db, email, password, *, now):
    """create-admin: create the admin, or promote an existing account; returns (user, "created" | "promoted" | "exists")."""
    user, outcome = ensure_admin(db, email, password, now=now)
    if outcome == "not-admin":
        return repository.set_role(db, user["_id"], ROLE_ADMIN), "promoted"
    return user, outcome
