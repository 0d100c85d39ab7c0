"""The per-user rate limit shared by every generation endpoint."""
from flask import current_app
from flask_jwt_extended import get_jwt_identity

from backend.extensions import limiter


def _generation_limit():
    return current_app.config["RATELIMIT_GENERATION"]


# One budget of requests shared by every generation endpoint. Applied below @jwt_required,
# so the key is the verified user id.
generation_rate_limit = limiter.shared_limit(_generation_limit, scope="generation", key_func=get_jwt_identity)
# Estimates make no LLM call but count long prompts: limited at the same rate, counted apart.
estimate_rate_limit = limiter.shared_limit(_generation_limit, scope="estimate", key_func=get_jwt_identity)
