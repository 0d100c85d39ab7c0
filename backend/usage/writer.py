"""Recording off the response path: the spool is the ledger's write-ahead log.

With LEDGER_WRITES=async (the default) a request appends its records to the spool (one
fsync'd append) and answers; nothing reaches the database on its path. One thread per
process, the ledger writer, then moves everything spooled to the database in batches: one
insert_many for the ledger and one merged update per rollup key (a single bulk write per
rollup collection on MongoDB). A record's _id comes from its callId, so a batch replayed
after a crash or by another worker lands once. A record is in the admin views within about
LEDGER_WRITE_INTERVAL_MS of its request while the database answers; a process killed at any
moment loses nothing that was answered: its records are in the spool, replayed by the next
writer of any process sharing the file (or scripts/replay_spool.py).

With LEDGER_WRITES=sync the records are written on the request's path, as before (the spool
then only takes what the database refused).

Until the process has seen every data migration done (another worker may be rebuilding the
rollups), records stay in the spool either way: written then, they could be counted twice or
missed by the rebuild. The background pass replays them once the migrations are done.
"""
import atexit
import logging
import threading

from backend.db import get_db
from backend.metrics import metrics
from backend.usage.recorder import record_usage, write_records

log = logging.getLogger("backend.usage")
FLUSH_AT_EXIT_SECONDS = 5


class LedgerWriter:
    def __init__(self, app):
        self.app = app
        self.asynchronous = app.config["LEDGER_WRITES"] == "async"
        self.interval = app.config["LEDGER_WRITE_INTERVAL_MS"] / 1000
        self.spool = app.extensions["spool"]
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._thread = None

    def migrations_done(self):
        return self.app.extensions.get("migrations_done", True)

    def submit(self, db, records, metrics):
        """Take a request's records: spool them for the writer, or write them now (sync)."""
        if not self.asynchronous and self.migrations_done():
            record_usage(db, records, self.spool, metrics)
            return
        try:
            self.spool.append(records)
        except OSError:
            log.exception("The spool could not take %d record(s); writing them on the request's path",
                          len(records))
            record_usage(db, records, None, metrics)
            return
        self._start()
        self._wake.set()

    def flush(self):
        """Write everything spooled now; returns (written, still spooled)."""
        if not self.migrations_done():
            return 0, self.spool.count()
        with self.app.app_context():
            db, registry = get_db(), metrics()
            return self.spool.replay(lambda records: write_records(db, records, registry))

    def _start(self):
        if self._thread is not None:
            return
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="tokenledger-ledger-writer", daemon=True)
                self._thread.start()
                atexit.register(self._flush_at_exit)

    def _run(self):
        while True:
            self._wake.wait()
            # A short pause gathers the records of concurrent requests into one batch.
            self._wake.clear()
            threading.Event().wait(self.interval)
            try:
                self.flush()
            except Exception:
                log.exception("Ledger writer pass failed; the records stay spooled")

    def _flush_at_exit(self):
        done = threading.Event()

        def final():
            try:
                self.flush()
            finally:
                done.set()

        threading.Thread(target=final, daemon=True).start()
        if not done.wait(FLUSH_AT_EXIT_SECONDS):
            log.warning("Spooled usage records were not all written at exit; the next start replays them")
