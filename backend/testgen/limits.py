"""The per-user rate limit shared by every generation endpoint."""
from flask import current_app
from flask_jwt_extended import get_jwt_identity

from backend.extensions import limiter


def _generation_limit():
    return current_app.config["RATELIMIT_GENERATION"]


# One budget of requests shared by every generation endpoint. Applied below @jwt_required,
# so the key is the verified user id.
generation_rate_limit = limiter.shared_limit(_generation_limit, scope="generation", key_func=get_jwt_identity)
