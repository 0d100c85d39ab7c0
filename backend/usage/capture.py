"""After-request capture of LLM usage (the seed's automatic tracking), and the one recorder.

The seed recorded a call only when its request succeeded. A provider bills every call it
answered, though, so here every such call is recorded exactly once, and how the request
ended is a field of the record instead of a filter:
- `outcome`: ok, unreadable (the reply held no test cases), failed_after_call (a later
  step failed), client_gone (a stream whose client left), timeout, provider_error (a
  stream the provider broke after it had started);
- `httpStatus`: the status the request answered with.

JSON answers: the generation transaction `hold`s each answered call for the request; the
after-request hook records them with the response's status (the seed's design), and a
teardown hook records whatever a failing response left held. Streams record themselves
through `record` when they end, because the hook runs before a streamed body is sent.
Recording never raises: a failure is logged, the records are spooled, and the response stands.
"""
import logging
import re
import uuid
from dataclasses import dataclass
from functools import wraps

from flask import current_app, g, request

from backend.db import get_db
from backend.metrics import metrics
from backend.usage.recorder import Attribution, LedgerRecord

log = logging.getLogger("backend.usage")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
UNANSWERED = 500


def tracked(operation):
    """Mark a view as a generation endpoint whose LLM calls go to the ledger as `operation`."""

    def decorator(view):
        @wraps(view)
        def wrapper(*args, **kwargs):
            g.tracked_operation = operation
            return view(*args, **kwargs)

        return wrapper

    return decorator


def tracked_operation():
    return g.tracked_operation


@dataclass
class Held:
    call: object
    who: Attribution
    ticket: dict  # the budget reservation's, settled with the record
    outcome: str | None = None  # None: decided by the response status


def hold(call, who, ticket, outcome=None):
    """Keep an answered call for the after-request hook; returns the entry, whose outcome may be set later."""
    entry = Held(call, who, ticket, outcome)
    g.setdefault("held_calls", []).append(entry)
    return entry


def record(entries, operation, status, request_id):
    """Write [(call, attribution, ticket, outcome)] to the ledger as one batch. Never raises."""
    try:
        records = [LedgerRecord(call, who, operation, outcome, status, request_id, ticket).document()
                   for call, who, ticket, outcome in entries]
        if records:
            current_app.extensions["ledger_writer"].submit(get_db(), records, metrics())
    except Exception:
        log.exception("Recording usage failed for callIds %s", ", ".join(entry[0].call_id for entry in entries))


def _record_held(status):
    held = g.pop("held_calls", [])
    if not held:
        return
    default = "ok" if status < 400 else "failed_after_call"
    record([(entry.call, entry.who, entry.ticket, entry.outcome or default) for entry in held],
           g.tracked_operation, status, g.request_id)


def _assign_request_id():
    supplied = request.headers.get("X-Request-ID", "")
    g.request_id = supplied if _REQUEST_ID.fullmatch(supplied) else uuid.uuid4().hex


def _capture(response):
    try:
        _record_held(response.status_code)
    except Exception:
        log.exception("Usage capture failed for %s", request.path)
    return response


def _capture_leftovers(exc):
    """A response that failed before the after-request hooks ran still leaves its calls in the ledger."""
    try:
        _record_held(UNANSWERED)
    except Exception:
        log.exception("Usage capture failed at teardown")


def _echo_request_id(response):
    response.headers["X-Request-ID"] = g.get("request_id", "")
    return response


def init_app(app):
    app.before_request(_assign_request_id)
    app.after_request(_capture)
    app.after_request(_echo_request_id)
    app.teardown_request(_capture_leftovers)
