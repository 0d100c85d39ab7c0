"""The ledger writer: the one code path from recorded calls to the ledger.

The spool (backend/usage/spool.py) is the ledger's write-ahead log. With LEDGER_WRITES=async
(the default) a request appends its records to the spool (one fsync'd append, shared by
concurrent requests) and answers; nothing reaches the database on its path. One thread per
process then writes what its requests recorded, from memory, in batches: one insert_many for
the ledger and merged updates per rollup key and budget counter. A record's _id comes from its
callId, so a record written twice (a retry, a recovery) lands once. A record is in the admin
views within about LEDGER_WRITE_INTERVAL_MS of its request while the database answers.

The spool is read back only to recover: after a failed write (this process's own records, once
the database answers again), and for processes that are gone (`replay`, from every process's
background pass and scripts/replay_spool.py): their records not yet written, and the calls they
had in flight (recorded as interrupted estimates).

Crash consistency: the ledger write and the views (rollups, budget counters) are not one
transaction, so each batch is noted (openai_token_usage_batches, with the records' budget
tickets) before its records are inserted (each carrying the batch id) and closed once every view
took it; every view takes a batch once per document (a document remembers the latest batches it
took: backend.db.once_per_batch). A batch a kill stopped midway is finished when its records are
written again (from the spool), or by `recover()` in the background pass: the views end up
exactly as if it had not been interrupted.

With LEDGER_WRITES=sync the records are written on the request's path (the spool then only
takes what the database refused).

Until the process has seen every data migration done (`ready()` is false: another worker may
be rebuilding the rollups), records wait in memory and the spool either way: written then, they
could be counted twice or missed by the rebuild.

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
from backend.usage.model import F, with_defaults
from backend.usage.recorder import BUDGET_TICKET, storable

log = logging.getLogger("backend.usage")
FLUSH_AT_EXIT_SECONDS = 5
# A batch unsettled for this long is no longer being written by anyone: recover() finishes it.
RECOVER_AFTER = timedelta(minutes=2)
# Groups named in a batch's log line (the rest are counted).
LOGGED_GROUPS = 20


class LedgerWriter:
    def __init__(self, db, spool, metrics, *, asynchronous, interval_seconds, ready=lambda: True, clock=utc_now):
        self.db, self.spool, self.metrics = db, spool, metrics
        self.asynchronous = asynchronous
        self.interval = interval_seconds
        self.ready = ready
        self.clock = clock
        self._listeners = []
        self._abandoned_listeners = []
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._thread = None
        self._queue = []  # records spooled and not yet written, in memory
        self._reread = False  # a write failed: read this process's unwritten records back from the spool
        self._exit_hook = False

    def on_written(self, listener):
        """Call `listener(db, written, now, batch)` for each batch the ledger accepted; `written` is
        [(record, budget ticket or None)]. It must apply a batch once (a batch is settled again
        after a crash); when it raises, the batch stays open and is completed later."""
        if listener not in self._listeners:
            self._listeners.append(listener)

    def on_abandoned(self, listener):
        """Call `listener(db, reservations)` with the budget reservations of calls whose process died
        before making them ([{"callId", "reserved": {counter key: [tokens, units]}}]); it must give
        each back once."""
        if listener not in self._abandoned_listeners:
            self._abandoned_listeners.append(listener)

    def reserving(self, call_id, reserved):
        """A budget reservation is about to be made for call `call_id`: spool it, so it is given
        back if this process dies before the call's intent. Never raises."""
        self._at_exit()
        try:
            self.spool.reserving({"callId": call_id, "reserved": reserved})
        except OSError:
            log.exception("The spool could not take the reservation of call %s", call_id)

    def intend(self, intent):
        """A provider call is about to be made: spool the record it leaves if this process dies
        first. Never raises: a spool that cannot take it is logged, and the call goes ahead."""
        self._at_exit()
        try:
            self.spool.intend(intent)
        except OSError:
            log.exception("The spool could not take the intent of call %s", intent.get("callId"))

    def cancel(self, call_id):
        """The provider refused the call: nothing will be recorded for it."""
        try:
            self.spool.resolve([call_id])
        except OSError:
            log.exception("The spool could not take the cancellation of call %s", call_id)

    def submit(self, records):
        """Take a request's records: spool them for the writer thread, or write them now (sync).
        Never raises, so the user's response stands."""
        if not self.asynchronous and self.ready():
            self._write_now(records)
            return
        try:
            self.spool.append(records)
        except OSError:
            log.exception("The spool could not take %d record(s); writing them on the request's path",
                          len(records))
            self._write_now(records, spool=False)
            return
        self._enqueue(records)

    def _enqueue(self, records):
        with self._lock:
            self._queue.extend(records)
        self._start()
        self._wake.set()

    def write(self, records):
        """Write one batch: the batch noted (with the records' budget tickets), the ledger (each
        record carrying the batch id), then the listeners (budget counters), the rollups, and last
        the batch closed. Every step after the ledger applies a batch once per document, so a batch
        a crash stopped midway is completed, exactly, by writing its records again: records
        already in the ledger whose batch is still open have their batch finished here. Raises
        when a step fails. Returns the records inserted now."""
        # Records spooled by an older version lack fields that came later.
        documents = [with_defaults(record) for record in records]
        batch, tickets = str(ObjectId()), {}
        for document in documents:
            ticket = document.pop(BUDGET_TICKET, None)
            document[F.BATCH_ID] = batch
            if ticket is not None:
                tickets[document[F.CALL_ID]] = ticket
        invalid = [document.get(F.CALL_ID) for document in documents if not storable(document)]
        if invalid:
            # Refused before anything is written; the spool then writes the others one by one and
            # sets these aside.
            raise ValueError(f"unstorable ledger record(s): {invalid}")
        repository.open_batch(self.db, batch, [document[F.CALL_ID] for document in documents], tickets)
        inserted = repository.insert_records(self.db, documents)
        kept = {record[F.CALL_ID] for record in inserted}
        skipped = [d[F.CALL_ID] for d in documents if d[F.CALL_ID] not in kept]
        earlier = repository.open_batches_of(self.db, skipped)
        if skipped:
            log.info("%d record(s) already in the ledger (written before: a retry or a recovery); callIds %s",
                     len(skipped), ", ".join(skipped))
        for batch_id, group, group_tickets in earlier:
            log.warning("Completing batch %s an earlier write left open (%d record(s))", batch_id, len(group))
            self._settle(batch_id, group, group_tickets)
        self._settle(batch, inserted, tickets)
        if inserted:
            if self.metrics is not None:
                self.metrics.usage_writes.inc(len(inserted))
                _count_usage(self.metrics, inserted)
            log_batch(batch, inserted)
        return inserted

    def _settle(self, batch, records, tickets):
        """Bring a batch's records into every view (the listeners, then the rollups), then close it."""
        if records:
            written = [(record, tickets.get(record[F.CALL_ID])) for record in records]
            now = self.clock()
            for listener in self._listeners:
                listener(self.db, written, now, batch)
            rollups.apply(self.db, records, batch)
        repository.close_batch(self.db, batch)

    def recover(self, older_than=RECOVER_AFTER):
        """Finish the batches a write stopped midway (a crash, or the database lost) that began
        more than `older_than` ago; returns how many records were settled."""
        settled = empty = 0
        # Batch ids carry the wall time their write began (not the app's clock, which tests may fix).
        for batch_id, group, tickets in repository.stale_batches(self.db, utc_now() - older_than):
            self._settle(batch_id, group, tickets)
            settled += len(group)
            empty += not group
        if settled:
            log.warning("Recovered %d ledger record(s) a write had left unsettled", settled)
        if empty:
            log.info("Closed %d batch note(s) of writes that stopped before their insert (their records were "
                     "written in later batches)", empty)
        return settled

    def pending(self):
        """Anything to write: this process's records, or what processes that are gone left?"""
        with self._lock:
            mine = bool(self._queue) or self._reread
        return mine or self.spool.pending()

    def replay(self):
        """Write what this process recorded and has not written yet, and what processes that are
        gone left in the spool (each record exactly once); returns (written, still waiting). The
        writer thread, the background pass and scripts/replay_spool.py all come through here."""
        if not self.ready():
            return 0, self.spool.count()
        written, left = self._drain()
        recovered, remaining = self.spool.recover(self.write, self._give_back)
        if self.metrics is not None and recovered:
            self.metrics.usage_replayed.inc(recovered)
        return written + recovered, left + remaining

    def _give_back(self, reservations):
        for listener in self._abandoned_listeners:
            listener(self.db, reservations)

    def _drain(self):
        """Write this process's queued records (or, after a failure, its unwritten ones read back)."""
        with self._lock:
            reread, self._reread = self._reread, False
            batch, self._queue = ([], []) if reread else (self._queue, [])
        if reread:
            batch = self.spool.unwritten()
        if not batch:
            return 0, 0
        try:
            inserted = self.spool.write_each(batch, self.write)
        except Exception as exc:
            with self._lock:
                self._reread = True
            level = logging.WARNING if isinstance(exc, PyMongoError) else logging.ERROR
            log.log(level, "Writing %d usage record(s) failed (%s); they stay spooled and are written when the "
                    "database answers", len(batch), exc, exc_info=level == logging.ERROR)
            if self.metrics is not None and not reread:  # counted once, not at every retry
                self.metrics.usage_write_failures.inc()
            return 0, len(batch)
        self.spool.resolve([record.get(F.CALL_ID) for record in batch])
        if reread and self.metrics is not None:
            self.metrics.usage_replayed.inc(len(inserted))
        return len(inserted), 0

    def _write_now(self, records, spool=True):
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
            return
        try:
            self.spool.resolve([record.get(F.CALL_ID) for record in records])
        except OSError:
            log.exception("The spool could not note %d written record(s) (they are in the ledger)", len(records))

    def _spool(self, records):
        try:
            self.spool.append(records)
        except OSError:
            log.exception("Spooling %d usage record(s) failed too; callIds: %s", len(records),
                          ", ".join(str(r.get("callId")) for r in records))
            return
        if self.metrics is not None:
            self.metrics.usage_spooled.inc(len(records))
        log.warning("Spooled %d usage record(s) to %s; they are written when the database answers",
                    len(records), self.spool.path)
        with self._lock:
            self._reread = True
        self._start()
        self._wake.set()

    def _start(self):
        if self._thread is not None:
            return
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="tokenledger-ledger-writer", daemon=True)
                self._thread.start()
        self._at_exit()

    def _at_exit(self):
        """Register the exit hook once (when this process first spools anything)."""
        if not self._exit_hook:
            with self._lock:
                if not self._exit_hook:
                    self._exit_hook = True
                    atexit.register(self._flush_at_exit)

    def _run(self):
        while True:
            self._wake.wait()
            # A short pause gathers the records of concurrent requests into one batch.
            self._wake.clear()
            threading.Event().wait(self.interval)
            try:
                if self.ready():
                    _, left = self._drain()
                    if left:  # the database is down: try again after a pause, not at the next request
                        threading.Event().wait(max(self.interval, 1.0))
                        self._wake.set()
            except Exception:
                log.exception("Ledger writer pass failed; the records stay spooled")

    def _flush_at_exit(self):
        done = threading.Event()

        def final():
            try:
                if self.ready():
                    self._drain()
                self.spool.retire()
            finally:
                done.set()

        threading.Thread(target=final, daemon=True).start()
        if not done.wait(FLUSH_AT_EXIT_SECONDS):
            log.warning("Spooled usage records were not all written at exit; the next start replays them")


# The metrics' token kinds (backend.metrics.TOKEN_KINDS) in the ledger's fields.
TOKEN_FIELDS = {"input": F.PROMPT_TOKENS, "cached_input": F.CACHED_INPUT_TOKENS, "cache_write": F.CACHE_WRITE_TOKENS,
                "output": F.COMPLETION_TOKENS, "reasoning": F.REASONING_TOKENS}


def _count_usage(metrics, records):
    """The metrics of written records: summed per provider, model and operation, then one update each."""
    sums = {}
    for record in records:
        labels = (record[F.PROVIDER], record[F.MODEL_NAME], record[F.OPERATION])
        totals = sums.get(labels)
        if totals is None:
            totals = sums[labels] = {**dict.fromkeys(TOKEN_FIELDS, 0), F.COST: 0.0}
        for kind, name in TOKEN_FIELDS.items():
            totals[kind] += record[name]
        totals[F.COST] += record[F.COST]
    for (provider, model, operation), totals in sums.items():
        metrics.count_usage(provider, model, operation, totals, totals.pop(F.COST))


def log_batch(batch, records):
    """The seed's log line ("OpenAI usage tracked"), once per written batch: its totals, then per
    user, provider, model and operation; each record's callId at DEBUG."""
    groups = {}
    for r in records:
        group = groups.setdefault((r["userEmail"], r["provider"], r["modelName"], r["operation"]), [0, 0, 0, 0, 0.0])
        for index, value in enumerate((1, r["promptTokens"], r["completionTokens"], r["totalTokens"], r["cost"])):
            group[index] += value
    parts = [f"user={user} provider={provider} model={model} operation={operation} records={n} promptTokens={p} "
             f"completionTokens={c} totalTokens={t} cost={cost:.10f}"
             for (user, provider, model, operation), (n, p, c, t, cost) in list(groups.items())[:LOGGED_GROUPS]]
    if len(groups) > LOGGED_GROUPS:
        parts.append(f"and {len(groups) - LOGGED_GROUPS} more")
    log.info("OpenAI usage tracked: %d record(s), batch %s: %s", len(records), batch, "; ".join(parts))
    if log.isEnabledFor(logging.DEBUG):
        log.debug("Batch %s callIds: %s (estimated: %s)", batch, ", ".join(r["callId"] for r in records),
                  ", ".join(r["callId"] for r in records if r["estimated"]) or "none")
