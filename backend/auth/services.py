"""Registration, credentials and admin bootstrap: plain functions over the users collection."""
from flask_jwt_extended import create_access_token, create_refresh_token
from werkzeug.security import check_password_hash, generate_password_hash

from backend.auth import repository
from backend.errors import Conflict, Unauthorized

ROLE_USER = "user"
ROLE_ADMIN = "admin"

# Checked when the email is unknown so a miss costs as long as a wrong password.
_DUMMY_HASH = generate_password_hash("not-a-real-password")


def register_user(db, email, password, name=None, role=ROLE_USER):
    try:
        return repository.insert_user(db, email, generate_password_hash(password), name, role)
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


def refresh_access_token(user):
    claims = {"email": user["email"], "role": user["role"]}
    return create_access_token(identity=str(user["_id"]), additional_claims=claims)


def ensure_admin(db, email, password):
    """Create the admin, or promote an existing account; returns (user, "created" | "promoted" | "exists")."""
    user = repository.find_by_email(db, email)
    if user is None:
        return register_user(db, email, password, name="Administrator", role=ROLE_ADMIN), "created"
    if user["role"] == ROLE_ADMIN and user.get("isActive", True):
        return user, "exists"
    return repository.set_role(db, user["_id"], ROLE_ADMIN), "promoted"
