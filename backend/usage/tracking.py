"""One tracked provider call, from before it is made to its one ledger record (the seed's
automatic tracking).

The seed recorded a call only when its request succeeded. A provider bills every call it
answered, though, so here every such call is recorded exactly once, and how the request ended
is a field of the record instead of a filter:
- `outcome`: ok, unreadable (the reply held no test cases), failed_after_call (a later step
  failed), client_gone (a stream whose client left), timeout, provider_error (a stream the
  provider broke after it had started);
- `httpStatus`: the status the request answered with.

A `TrackedCall` is opened before the provider call with who pays for it, the budget
reservation of its worst case, and the call as that reservation counted it: opening spools
that as the call's intent (backend/usage/spool.py), the record the ledger gets (outcome
`interrupted`, estimated) if the process dies before the call closes. The code making the call
tells it what happened: `answered`
(with a function that reads the call, for a stream from what the provider reported when the
call closes), `failed` (the provider may have billed a call that did not answer: recorded as
an estimate), `refused` (nothing was billed: the reservation is released and the intent
cancelled), and `outcome` (how the request ended when that is not a plain success). A call
closed with none of these said is recorded as its intent: the provider may have billed it.

It is closed exactly once, by whichever comes first: for a JSON answer, the after-request hook
with the response's status (the seed's design), or teardown when the response failed before
the hooks ran; for a stream, the stream's end, or the drain that reads an abandoned stream to
its end. Closing decides the outcome and records. Recording never raises: a failure is logged,
the record is spooled, and the response stands.
"""
import logging
import re
import threading
import uuid
from functools import wraps

from flask import g, request

from backend.usage.recorder import INTERRUPTED, LedgerRecord

log = logging.getLogger("backend.usage")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
# The status a request is recorded with when it failed before it could answer.
UNANSWERED = 500


class TrackedCall:
    def __init__(self, writer, metrics, *, who, operation, request_id, reservation, intent):
        """`intent`: the LLMCall as the reservation counts it (backend.llm.calls.reserved_call); the
        answered call must carry its call_id."""
        self.writer, self.metrics = writer, metrics
        self.who, self.operation, self.request_id = who, operation, request_id
        self.provider, self.reservation, self.call_id = intent.provider, reservation, intent.call_id
        self._intent = LedgerRecord(intent, who, operation, INTERRUPTED, None, request_id,
                                    reservation.ticket(ending=False)).document()
        writer.intend(self._intent)
        self._read = None
        self._outcome = None
        self._error_status = None
        self._refused = False
        self._closed = False
        self._lock = threading.Lock()

    def answered(self, read):
        """The provider answered; `read()` makes the LLMCall to record (called once, at close)."""
        self._read = read

    def failed(self, status, outcome, estimate):
        """The provider failed with `status` after it may have run the call: it is recorded as the
        LLMCall `estimate` with this outcome (timeout, unreadable, provider_error)."""
        self._error_status, self._outcome = status, outcome
        self._read = lambda: estimate

    def refused(self, status):
        """The provider refused the call before it could bill it: nothing is recorded."""
        self._error_status, self._read, self._refused = status, None, True

    def outcome(self, outcome):
        """How the request ended, when not as the response status says (unreadable, client_gone...)."""
        self._outcome = outcome

    @property
    def closed(self):
        return self._closed

    def close(self, status):
        """Record the call once (a second close does nothing); returns whether this one closed it.
        `status` is the response's, or None for a call no request made."""
        with self._lock:
            if self._closed:
                return False
            self._closed = True
        try:
            self._finish(status)
        except Exception:
            log.exception("Recording usage failed for a %s call of request %s", self.provider, self.request_id)
        return True

    def _finish(self, status):
        if self._read is None:
            self._count(f"error_{self._error_status or status}")
            if self._refused:
                self.reservation.release()  # nothing was billed
                self.writer.cancel(self.call_id)
            else:
                # Nobody said what became of the call: the provider may have billed it, so it is
                # recorded as its intent (estimated at its reservation), which the counters keep.
                log.error("A %s call of request %s closed without an answer or a refusal; recorded as estimated "
                          "at its budget reservation", self.provider, self.request_id)
                self.reservation.ticket()
                self.writer.submit([self._intent])
            return
        call = self._read()
        if call.call_id != self.call_id:
            raise ValueError(f"call {call.call_id} recorded for the tracked call {self.call_id}")
        # No status: a call made off the request path (the embedding of saved cases) answers nobody.
        outcome = self._outcome or ("ok" if status is None or status < 400 else "failed_after_call")
        self._count(f"error_{self._error_status}" if self._error_status else outcome, call.latency_ms)
        document = LedgerRecord(call, self.who, self.operation, outcome, status, self.request_id,
                                self.reservation.ticket()).document()
        self.writer.submit([document])

    def _count(self, label, latency_ms=None):
        if self.metrics is not None:
            self.metrics.count_call(self.provider, label, latency_ms)


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


def request_id():
    return g.request_id


def close_with_response(tracked_call):
    """The after-request hook closes `tracked_call` with the response's status."""
    g.setdefault("tracked_calls", []).append(tracked_call)


def taken_from_response(tracked_call):
    """A stream closes its call itself, when it ends: the after-request hook must not."""
    calls = g.get("tracked_calls", [])
    if tracked_call in calls:
        calls.remove(tracked_call)


def _assign_request_id():
    supplied = request.headers.get("X-Request-ID", "")
    g.request_id = supplied if _REQUEST_ID.fullmatch(supplied) else uuid.uuid4().hex


def _close_request_calls(response):
    for tracked_call in g.pop("tracked_calls", []):
        tracked_call.close(response.status_code)
    return response


def _close_leftovers(exc):
    """A response that failed before the after-request hooks ran still leaves its calls in the ledger."""
    for tracked_call in g.pop("tracked_calls", []):
        tracked_call.close(UNANSWERED)


def _echo_request_id(response):
    response.headers["X-Request-ID"] = g.get("request_id", "")
    return response


def init_app(app):
    app.before_request(_assign_request_id)
    app.after_request(_close_request_calls)
    app.after_request(_echo_request_id)
    app.teardown_request(_close_leftovers)
