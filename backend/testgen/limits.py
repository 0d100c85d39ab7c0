"""The per-user rate limit shared by every generation endpoint."""
from flask import current_app

from backend.auth.guards import caller_id
from backend.extensions import limiter


def _generation_limit():
    return current_app.config["RATELIMIT_GENERATION"]


# One budget of requests shared by every generation endpoint. Applied below @user_required,
# so the key is the verified user id (an API key counts as its owner).
generation_rate_limit = limiter.shared_limit(_generation_limit, scope="generation", key_func=caller_id)
# Estimates make no LLM call but count long prompts: limited at the same rate, counted apart.
estimate_rate_limit = limiter.shared_limit(_generation_limit, scope="estimate", key_func=caller_id)
