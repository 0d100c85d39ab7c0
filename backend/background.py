"""Work kept off the request path: replaying the usage spool, reconciling yesterday with the
providers' usage reports, and sending alerts; and, in a thread of its own (provider calls can be
slow), embedding saved test cases (backend/testcases/embeddings.py).

Every worker process runs one daemon thread; the spool's file locks, the alerts' atomic claims
and reconciliation results keyed by provider and day make several of them safe together.
"""
import logging
import threading
from datetime import timedelta

from pymongo.errors import PyMongoError

from backend import clock
from backend.alerts.services import dispatch_due
from backend.budgets.services import queue_projected_crossings
from backend.db import get_db
from backend.reconciliation.services import reconcile_due
from backend.runtime import runtime
from backend.startup import start_up_database
from backend.testcases.embeddings import start_worker as start_embedding_worker

log = logging.getLogger(__name__)
# Whether a day is due for reconciliation changes once a day; asking the store every pass is waste.
RECONCILE_CHECK_EVERY = timedelta(minutes=10)
PROJECTION_CHECK_EVERY = timedelta(minutes=10)


def run_once(app):
    """One pass: finish the start-up database tasks (migrations first) if the database was down
    at start-up or another worker was migrating, replay the spool when the database answers and
    the migrations are done, finish the ledger batches a crash left unsettled, reconcile the
    settled day when due, alert budgets projected to cross a monthly limit (every 10 minutes),
    then send due alerts (a reconciliation alert goes out in the same pass)."""
    state = runtime(app)
    if state.start_up_pending:
        start_up_database(app)
        if not state.migrations_done:
            return  # spooled records wait for the migrations
    with app.app_context():
        db = get_db()
        now = clock.now()
        try:
            if state.writer.pending():
                db.command("ping")
                _without_failing_the_pass(state.writer.replay)  # it logs what it recovers
            if state.migrations_done:
                state.writer.recover()
            _reconcile_when_due(app, db, now)
            _project_when_due(app, db, now)
            if app.config["ALERT_WEBHOOK_URL"]:
                dispatch_due(db, app.config["ALERT_WEBHOOK_URL"], app.config["ALERT_MAX_ATTEMPTS"], now)
        except PyMongoError as exc:
            log.warning("Background pass skipped, database unavailable: %s", exc)


def _without_failing_the_pass(step):
    """Run one step; a failure other than the database's is logged, and the pass goes on (the
    recovery, reconciliation and alerts must not wait on one unreadable spool file)."""
    try:
        step()
    except PyMongoError:
        raise
    except Exception:
        log.exception("Background step %s failed; the pass goes on", getattr(step, "__name__", step))


def _reconcile_when_due(app, db, now):
    state = runtime(app)
    if state.reconcile_next_check is not None and now < state.reconcile_next_check:
        return
    state.reconcile_next_check = now + RECONCILE_CHECK_EVERY
    reconcile_due(db, app.config, now)


def _project_when_due(app, db, now):
    """Budgets projected to cross a monthly limit are alerted; their pace changes slowly."""
    state = runtime(app)
    if state.projection_next_check is not None and now < state.projection_next_check:
        return
    state.projection_next_check = now + PROJECTION_CHECK_EVERY
    queue_projected_crossings(db, now)


def start(app):
    stop = threading.Event()

    def loop():
        while not stop.wait(app.config["BACKGROUND_INTERVAL_SECONDS"]):
            try:
                run_once(app)
            except Exception:
                log.exception("Background pass failed")

    thread = threading.Thread(target=loop, name="tokenledger-background", daemon=True)
    thread.start()
    start_embedding_worker(app, stop)
    runtime(app).background = stop
    return stop
