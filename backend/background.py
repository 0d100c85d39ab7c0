"""Work kept off the request path: replaying the usage spool and sending alerts.

Every worker process runs one daemon thread; the spool's file locks and the alerts'
atomic claims make several of them safe together.
"""
import logging
import threading

from pymongo.errors import PyMongoError

from backend.alerts.services import dispatch_due
from backend.clock import utc_now
from backend.db import get_db
from backend.metrics import metrics
from backend.usage.recorder import replay_spool

log = logging.getLogger(__name__)


def run_once(app):
    """One pass: replay the spool when the database answers, then send due alerts."""
    with app.app_context():
        db = get_db()
        spool = app.extensions["spool"]
        try:
            if spool.pending():
                db.command("ping")
                replay_spool(db, spool, metrics())
            if app.config["ALERT_WEBHOOK_URL"]:
                dispatch_due(db, app.config["ALERT_WEBHOOK_URL"], app.config["ALERT_MAX_ATTEMPTS"], utc_now())
        except PyMongoError as exc:
            log.warning("Background pass skipped, database unavailable: %s", exc)


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
