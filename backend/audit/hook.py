"""Records every request to the admin API, whoever made it and however it ended.

The admin page (/admin/ and its static assets) reads no data itself, so it is not logged;
every call it makes to /admin/openai/* and /admin/orgs is. An entry carries the organization
of a caller who is not a platform admin, so an organization admin reads their members' entries.

An entry is built on the request (bounded: a caller who sends 60 long query parameters gets a
few hundred bytes logged, marked truncated) and written by a background thread, so a slow or
unreachable database never delays the answer. The queue is bounded too: while the database is
down, entries beyond QUEUE_SIZE are dropped with a warning rather than held in memory.
"""
import logging
import queue
import threading

from flask import request
from flask_jwt_extended import get_current_user

from backend.audit.repository import insert_entry
from backend.clock import now as clock_now
from backend.db import get_db
from backend.runtime import runtime

log = logging.getLogger(__name__)
ADMIN_PREFIXES = ("/admin/openai/", "/admin/orgs")
MAX_QUERY_KEYS = 20
MAX_VALUES_PER_KEY = 5
MAX_KEY_LENGTH = 64
MAX_VALUE_LENGTH = 256
MAX_PATH_LENGTH = 512
QUEUE_SIZE = 1000
# The writer thread ends after this long without entries and is started again by the next one,
# so an app that is no longer used (many in a test run) leaves no thread behind.
IDLE_SECONDS = 5


def _caller():
    try:
        return get_current_user()
    except RuntimeError:
        return None


def bounded_query(args):
    """(query as {key: [values]}, truncated): at most MAX_QUERY_KEYS keys of MAX_KEY_LENGTH
    characters, MAX_VALUES_PER_KEY values of MAX_VALUE_LENGTH characters each."""
    query, truncated = {}, False
    for number, (key, values) in enumerate(args.lists()):
        if number == MAX_QUERY_KEYS:
            truncated = True
            break
        kept = [value[:MAX_VALUE_LENGTH] for value in values[:MAX_VALUES_PER_KEY]]
        truncated = truncated or len(key) > MAX_KEY_LENGTH or len(values) > MAX_VALUES_PER_KEY or any(
            len(value) > MAX_VALUE_LENGTH for value in values[:MAX_VALUES_PER_KEY])
        # MongoDB field names may not contain "." or start with "$".
        query[key[:MAX_KEY_LENGTH].replace(".", "\uff0e").replace("$", "\uff04", 1)] = kept
    return query, truncated


class AuditWriter:
    """One per app: a bounded queue and a daemon thread writing its entries in order."""

    def __init__(self):
        self._queue = queue.Queue(maxsize=QUEUE_SIZE)
        self._lock = threading.Lock()
        self._thread = None

    def submit(self, db, entry):
        try:
            self._queue.put_nowait((db, entry))
        except queue.Full:
            log.warning("Audit log queue full (database slow or down): entry dropped for %s %s",
                        entry["method"], entry["path"])
            return
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)
                self._thread.start()

    def _run(self):
        while True:
            try:
                db, entry = self._queue.get(timeout=IDLE_SECONDS)
            except queue.Empty:
                with self._lock:
                    if self._queue.empty():
                        self._thread = None
                        return
                continue
            try:
                insert_entry(db, entry)
            except Exception:
                log.exception("Audit log write failed for %s %s", entry["method"], entry["path"])
            finally:
                self._queue.task_done()

    def flush(self, timeout):
        """Wait until every queued entry is written (or failed); False if `timeout` passed first."""
        with self._queue.all_tasks_done:
            return self._queue.all_tasks_done.wait_for(lambda: not self._queue.unfinished_tasks, timeout)


def flush(app=None, timeout=5.0):
    """Write out the audit entries queued so far: readers of the audit log call this first."""
    return runtime(app).audit.flush(timeout)


def _audit(response):
    if not request.path.startswith(ADMIN_PREFIXES):
        return response
    try:
        caller = _caller()
        now = clock_now()
        query, truncated = bounded_query(request.args)
        entry = {
            "adminId": caller.id if caller else None,
            "adminEmail": caller.email if caller else None,
            "orgId": None if caller is None or caller.platform_admin else caller.org_id,
            "method": request.method,
            "path": request.path[:MAX_PATH_LENGTH],
            "query": query,
            "status": response.status_code,
            "ip": request.remote_addr,
            "time": now,
            "date": now.strftime("%Y-%m-%d"),
        }
        if truncated or len(request.path) > MAX_PATH_LENGTH:
            entry["truncated"] = True
        runtime().audit.submit(get_db(), entry)
    except Exception:
        log.exception("Audit log entry failed for %s %s", request.method, request.path)
    return response


def init_app(app):
    runtime(app).audit = AuditWriter()
    app.after_request(_audit)
