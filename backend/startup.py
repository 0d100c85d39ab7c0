"""Start-up database tasks every worker runs (and the background pass retries): migrations,
indexes and the bootstrap admin."""
import logging

from pymongo.errors import ConnectionFailure, PyMongoError

from backend.auth.services import ensure_admin
from backend.clock import now
from backend.db import atomic, get_db
from backend.indexes import ensure_indexes
from backend.runtime import runtime
from backend.usage import migrations

log = logging.getLogger("backend")

# How long a starting worker waits for another one's migration before serving (and retrying in the background).
START_UP_MIGRATION_WAIT_SECONDS = 20


def start_up_database(app):
    """Migrations, indexes and the bootstrap admin; a database that is down is logged, not
    fatal, and the background thread runs them again until they are done."""
    db, state = get_db(app), runtime(app)
    try:
        # The embedded store is not safe for concurrent bulk updates: apps sharing it migrate in turn.
        with atomic(db):
            at = now(app)
            migrations.migrate(db, at, wait_seconds=START_UP_MIGRATION_WAIT_SECONDS)
        state.migrations_done = True
        if app.config["AUTO_CREATE_INDEXES"]:
            ensure_indexes(db, ledger_ttl_days=app.config["LEDGER_TTL_DAYS"])
        if app.config["ADMIN_EMAIL"]:
            user, outcome = ensure_admin(db, app.config["ADMIN_EMAIL"], app.config["ADMIN_PASSWORD"], now=at)
            if outcome == "created":
                log.warning("Bootstrap admin %s: created", user["email"])
            elif outcome == "not-admin":
                log.warning("ADMIN_EMAIL %s belongs to an existing account that is not an active admin; it is "
                            "left as it is (promote it explicitly with scripts/create_admin.py)", user["email"])
    except migrations.MigrationPending as exc:
        log.warning("Start-up database tasks wait for another worker (retried in the background): %s", exc)
        state.start_up_pending = True
        return
    except ConnectionFailure as exc:
        log.error("Start-up database tasks skipped, database unreachable (retried in the background): %s", exc)
        state.start_up_pending = True
        return
    except PyMongoError as exc:
        log.error("Start-up database tasks failed (retried in the background): %s", exc)
        state.start_up_pending = True
        return
    state.start_up_pending = False
