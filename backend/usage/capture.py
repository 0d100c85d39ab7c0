"""After-request capture of LLM usage (the seed's automatic tracking).

A record is written for each LLM call of a request when, and only when:
1. the view is a tracked generation endpoint (decorated with @tracked),
2. the response status is 200-399,
3. the caller is authenticated (a verified JWT with a loaded user),
4. the provider reported usage for that call.
The hook never raises into the response: a failure is logged and the response stands.
Streamed generations are recorded by the stream itself when it ends (record_calls),
because the hook runs before a streamed body is sent.
"""
import logging
import re
import uuid
from functools import wraps

from flask import current_app, g, request
from flask_jwt_extended import get_current_user

from backend.db import get_db
from backend.metrics import metrics
from backend.usage.recorder import build_record, record_usage

log = logging.getLogger("backend.usage")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def tracked(operation):
    """Mark a view as a generation endpoint whose LLM calls go to the ledger as `operation`."""

    def decorator(view):
        @wraps(view)
        def wrapper(*args, **kwargs):
            g.tracked_operation = operation
            return view(*args, **kwargs)

        return wrapper

    return decorator


def add_calls(calls):
    g.setdefault("llm_calls", []).extend(calls)


def record_calls(calls, user, operation, request_id):
    """Write the calls whose provider reported usage; warn about the others. Never raises."""
    try:
        for call in calls:
            if not call.usage.reported:
                log.warning(
                    "Usage not recorded: %s returned no usage for model %s (callId %s)",
                    call.provider, call.completion.model, call.call_id,
                )
        records = [build_record(call, user, operation, request_id) for call in calls if call.usage.reported]
        if records:
            record_usage(get_db(), records, current_app.extensions["spool"], metrics())
    except Exception:
        log.exception("Recording usage failed for callIds %s", ", ".join(c.call_id for c in calls))


def _authenticated_user():
    try:
        return get_current_user()
    except RuntimeError:
        return None


def _assign_request_id():
    supplied = request.headers.get("X-Request-ID", "")
    g.request_id = supplied if _REQUEST_ID.match(supplied) else uuid.uuid4().hex


def _capture(response):
    try:
        operation = g.get("tracked_operation")
        calls = g.pop("llm_calls", [])
        if operation is None or not calls:
            return response
        if not 200 <= response.status_code < 400:
            log.info("Usage not recorded: %s answered %d", request.path, response.status_code)
            return response
        user = _authenticated_user()
        if user is None:
            log.info("Usage not recorded: %s was not authenticated", request.path)
            return response
        record_calls(calls, user, operation, g.request_id)
    except Exception:
        log.exception("Usage capture failed for %s", request.path)
    return response


def _echo_request_id(response):
    response.headers["X-Request-ID"] = g.get("request_id", "")
    return response


def init_app(app):
    app.before_request(_assign_request_id)
    app.after_request(_capture)
    app.after_request(_echo_request_id)
