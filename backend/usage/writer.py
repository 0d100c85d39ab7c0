"""The ledger writer: the one code path from recorded calls to the ledger, and the spool's one replay.

The spool is the ledger's write-ahead log. With LEDGER_WRITES=async (the default) a request
appends its records to the spool (one fsync'd append) and answers; nothing reaches the database
on its path. One thread per process then moves everything spooled to the database in batches
(`replay`): one insert_many for the ledger and merged updates per rollup key and budget counter.
A record's _id comes from its callId, so a batch replayed after a crash or by another worker
lands once. A record is in the admin views within about LEDGER_WRITE_INTERVAL_MS of its request
while the database answers; a process killed at any moment loses nothing that was answered: its
records are in the spool, replayed by the next writer of any process sharing the file (or
scripts/replay_spool.py).

Crash consistency: the ledger write and the views (rollups, budget counters) are not one
transaction, so each written batch has an id, its records stay `settled: false` until every view
took them, and every view takes a batch once per document (a document remembers the latest
batches it took: backend.db.once_per_batch). A batch a kill stopped midway is finished by
writing it again (its spool replay), or by `recover()` in the background pass when no spool
holds it: the views end up exactly as if it had not been interrupted.

With LEDGER_WRITES=sync the records are written on the request's path (the spool then only
takes what the database refused).

Until the process has seen every data migration done (`ready()` is false: another worker may
be rebuilding the rollups), records stay in the spool either way: written then, they could be
counted twice or missed by the rebuild. The background pass replays them once the migrations
are done.

Other packages learn of written records by registering a listener (`on_written`): budgets
settles its counters that way, so the ledger never imports the packages that read it.
"""
import atexit
import logging
import threading
from datetime import timedelta

from bson import ObjectId
from pymongo.errors import PyMongoError

from backend.clock import utc_now
from backend.usage import repository, rollups
from backend.usage.model import F, UsageRecord, with_defaults
from backend.usage.recorder import BUDGET_TICKET, storable

log = logging.getLogger("backend.usage")
FLUSH_AT_EXIT_SECONDS = 5
# A batch unsettled for this long is no longer being written by anyone: recover() finishes it.
RECOVER_AFTER = timedelta(minutes=2)


class LedgerWriter:
    def __init__(self, db, spool, metrics, *, asynchronous, interval_seconds, ready=lambda: True, clock=utc_now):
        self.db, self.spool, self.metrics = db, spool, metrics
        self.asynchronous = asynchronous
        self.interval = interval_seconds
        self.ready = ready
        self.clock = clock
        self._listeners = []
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._thread = None

    def on_written(self, listener):
        """Call `listener(db, written, now, batch)` for each batch the ledger accepted; `written` is
        [(record, budget ticket or None)]. It must apply a batch once (a batch is settled again
        after a crash); when it raises, the batch stays unsettled and is completed later."""
        if listener not in self._listeners:
            self._listeners.append(listener)

    def submit(self, records):
        """Take a request's records: spool them for the writer thread, or write them now (sync).
        Never raises, so the user's response stands."""
        if not self.asynchronous and self.ready():
            self._write_or_spool(records)
            return
        try:
            self.spool.append(records)
        except OSError:
            log.exception("The spool could not take %d record(s); writing them on the request's path",
                          len(records))
            self._write_or_spool(records, spool=False)
            return
        self._start()
        self._wake.set()

    def write(self, records):
        """Write one batch: ledger first (each record `settled: false`, carrying its batch id and
        budget reservation), then the listeners (budget counters), the rollups, and last the
        records marked settled. Every step after the ledger applies a batch once per document,
        so a batch a crash stopped midway is completed, exactly, by writing it again: records
        already in the ledger but not settled have their batch finished here. Raises when a step
        fails (the caller keeps the records spooled). Returns the records inserted now."""
        # Records spooled by an older version lack fields that came later.
        documents = [with_defaults(record) for record in records]
        batch = str(ObjectId())
        for document in documents:
            ticket = document.pop(BUDGET_TICKET, None)
            document.update({F.BATCH_ID: batch, F.SETTLED: False})
            if ticket is not None:
                document[F.SETTLEMENT] = ticket
        invalid = [document.get(F.CALL_ID) for document in documents if not storable(document)]
        if invalid:
            # Refused before anything is inserted, so no record of the batch is left unsettled;
            # the spool then writes the others one by one and sets these aside.
            raise ValueError(f"unstorable ledger record(s): {invalid}")
        inserted = repository.insert_records(self.db, documents)
        kept = {record[F.CALL_ID] for record in inserted}
        skipped = [d[F.CALL_ID] for d in documents if d[F.CALL_ID] not in kept]
        earlier = repository.unsettled(self.db, skipped)
        if len(earlier) < len(skipped):
            log.info("%d record(s) already in the ledger and settled (a replay of a write that finished): "
                     "callIds %s", len(skipped) - len(earlier), ", ".join(skipped))
        if earlier:
            log.warning("Completing %d record(s) an earlier write left unsettled (callIds %s)", len(earlier),
                        ", ".join(record[F.CALL_ID] for record in earlier))
        for batch_id, group in _batches([*inserted, *earlier]).items():
            self._settle(batch_id, group)
        if self.metrics is not None:
            self.metrics.usage_writes.inc(len(inserted))
            self.metrics.count_records([UsageRecord.from_document(record) for record in inserted])
        for record in inserted:
            log_tracked(record)
        return inserted

    def _settle(self, batch, records):
        """Bring a batch's records into every view: the listeners, the rollups, then settled."""
        written = [(record, record.get(F.SETTLEMENT)) for record in records]
        now = self.clock()
        for listener in self._listeners:
            listener(self.db, written, now, batch)
        rollups.apply(self.db, records, batch)
        repository.mark_settled(self.db, [record[F.CALL_ID] for record in records])

    def recover(self, older_than=RECOVER_AFTER):
        """Finish the batches a write stopped midway (a crash, or the database lost) that began
        more than `older_than` ago and that no spool holds any more (LEDGER_WRITES=sync, or a
        spool that was lost); returns how many records were settled."""
        settled = 0
        # Batch ids carry the wall time their write began (not the app's clock, which tests may fix).
        for batch_id, group in repository.unsettled_batches(self.db, utc_now() - older_than).items():
            self._settle(batch_id, group)
            settled += len(group)
        if settled:
            log.warning("Recovered %d ledger record(s) a write had left unsettled", settled)
        return settled

    def replay(self):
        """Write everything spooled (each record exactly once); returns (written, still spooled).
        The writer thread, the background pass and scripts/replay_spool.py all replay through here."""
        if not self.ready():
            return 0, self.spool.count()
        written, left = self.spool.replay(self.write)
        if written:
            if self.metrics is not None:
                self.metrics.usage_replayed.inc(written)
            log.debug("Wrote %d spooled usage record(s)", written)
        return written, left

    def _write_or_spool(self, records, spool=True):
        try:
            self.write(records)
        except Exception:
            log.exception("Failed to write %d usage record(s); callIds: %s", len(records),
                          ", ".join(str(r.get("callId")) for r in records))
            if self.metrics is not None:
                self.metrics.usage_write_failures.inc()
            if spool:
                self._spool(records)
            else:
                log.error("%d usage record(s) lost: neither the database nor the spool took them", len(records))

    def _spool(self, records):
        try:
            self.spool.append(records)
        except OSError:
            log.exception("Spooling %d usage record(s) failed too; callIds: %s", len(records),
                          ", ".join(str(r.get("callId")) for r in records))
            return
        if self.metrics is not None:
            self.metrics.usage_spooled.inc(len(records))
        log.warning("Spooled %d usage record(s) to %s; they are replayed when the database answers",
                    len(records), self.spool.path)

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
                self.replay()
            except PyMongoError:
                log.warning("Ledger writer pass postponed, database unavailable; the records stay spooled")
            except Exception:
                log.exception("Ledger writer pass failed; the records stay spooled")

    def _flush_at_exit(self):
        done = threading.Event()

        def final():
            try:
                self.replay()
            finally:
                done.set()

        threading.Thread(target=final, daemon=True).start()
        if not done.wait(FLUSH_AT_EXIT_SECONDS):
            log.warning("Spooled usage records were not all written at exit; the next start replays them")


def _batches(records):
    """{batch id: its records}, in the order the batches come."""
    batches = {}
    for record in records:
        batches.setdefault(record[F.BATCH_ID], []).append(record)
    return batches


def log_tracked(r):
    """The seed's log line for a record written to the ledger."""
    log.info(
        "OpenAI usage tracked: user=%s provider=%s model=%s operation=%s outcome=%s promptTokens=%d "
        "completionTokens=%d totalTokens=%d cost=%.10f estimated=%s callId=%s",
        r["userEmail"], r["provider"], r["modelName"], r["operation"], r["outcome"],
        r["promptTokens"], r["completionTokens"], r["totalTokens"], r["cost"], r["estimated"],
        r["callId"],
    )
