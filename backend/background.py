"""Work kept off the request path: replaying the usage spool, reconciling yesterday with the
providers' usage reports, and sending alerts.

Every worker process runs one daemon thread; the spool's file locks, the alerts' atomic claims
and reconciliation results keyed by provider and day make several of them safe together.
"""
import logging
import threading
from datetime import timedelta

from pymongo.errors import PyMongoError

from backend import clock
from backend.alerts.services import dispatch_due
from backend.db import get_db
from backend.metrics import metrics
from backend.reconciliation.services import reconcile_due
from backend.usage.recorder import replay_spool

log = logging.getLogger(__name__)
# Whether a day is due for reconciliation changes once a day; asking the store every pass is waste.
RECONCILE_CHECK_EVERY = timedelta(minutes=10)


def run_once(app):
    """One pass: finish the start-up database tasks (migrations first) if the database was down
    at start-up or another worker was migrating, replay the spool when the database answers and
    the migrations are done, reconcile the settled day when due,
    then send due alerts (a reconciliation alert goes out in the same pass)."""
    if app.extensions.get("start_up_pending"):
        from backend import (
            start_up_database,  # the app factory's module imports this one
        )

        start_up_database(app)
        if not app.extensions.get("migrations_done", True):
            return  # spooled records wait for the migrations
    with app.app_context():
        db = get_db()
        spool = app.extensions["spool"]
        now = clock.now()
        try:
            if spool.pending():
                db.command("ping")
                replay_spool(db, spool, metrics())
            _reconcile_when_due(app, db, now)
            if app.config["ALERT_WEBHOOK_URL"]:
                dispatch_due(db, app.config["ALERT_WEBHOOK_URL"], app.config["ALERT_MAX_ATTEMPTS"], now)
        except PyMongoError as exc:
            log.warning("Background pass skipped, database unavailable: %s", exc)


def _reconcile_when_due(app, db, now):
    next_check = app.extensions.get("reconcile_next_check")
    if next_check is not None and now < next_check:
        return
    app.extensions["reconcile_next_check"] = now + RECONCILE_CHECK_EVERY
    reconcile_due(db, app.config, now)


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
    app.extensions["background"] = stop
    return stop
