"""Saved test cases' embeddings: made off the request path, in batches, billed to each case's owner;
and the similarity search RAG runs over them.

A case is saved with `embedding.status: pending` (and the hash of the text it embeds); editing
its text makes it pending again. `embed_due` claims due pending cases of one owner at a time
(EMBEDDING_BATCH_SIZE per provider call), reserves the call on the owner's budgets as they are
now, and stores each vector (backend/testcases/vectors.py's format) with its key: provider,
model and dimensions. A provider outage, a budget that is spent or a database error leaves the
cases pending for a later attempt (backoff from 30 s to an hour, or when the budget resets); a
case whose owner is gone is skipped. The embedding worker thread runs it when a case is saved and
every BACKGROUND_INTERVAL_SECONDS; `scripts/embed_cases.py` backfills and re-embeds.
"""
import json
import logging
import os
import re
import threading
import uuid
from datetime import timedelta

from bson import ObjectId
from bson.errors import InvalidId
from pymongo.errors import PyMongoError

from backend import clock
from backend.auth.repository import find_caller
from backend.db import get_db
from backend.errors import APIError, Forbidden
from backend.runtime import runtime
from backend.testcases import repository
from backend.testcases.services import text_hash
from backend.testcases.vectors import VectorIndex, decode, encode
from backend.testgen import transaction
from backend.testgen.embedding import EMBEDDING, Embedder, embed, vector_key
from backend.testgen.references import case_text
from backend.usage.recorder import Attribution
from backend.usage.tracking import TrackedCall

log = logging.getLogger(__name__)
# How long a claimed case is left to the worker that claimed it before another may take it.
CLAIM = timedelta(minutes=5)
FIRST_RETRY = timedelta(seconds=30)
LAST_RETRY = timedelta(hours=1)
# Another process's writes are read back from this far before the newest a pool has seen, so a
# write stamped by a slightly slower clock is not missed.
CLOCK_SKEW = timedelta(seconds=60)


def _background_context(app, db, caller, now, opened):
    """The generation transaction's context for calls no request makes: billed to `caller`, each
    TrackedCall kept in `opened` for whoever made it to close."""
    state, request_id = runtime(app), f"embed-{uuid.uuid4().hex}"

    def open_call(reservation, who, intent, operation=EMBEDDING):
        tracked = TrackedCall(state.writer, state.metrics, who=who, operation=operation, request_id=request_id,
                              reservation=reservation, intent=intent)
        opened.append(tracked)
        return tracked

    return transaction.Context(db=db, caller=caller, settings=transaction.Settings.from_config(app.config), now=now,
                               open_call=open_call, metrics=state.metrics, reserving=state.writer.reserving,
                               cancel=state.writer.cancel)


def _backoff(attempts):
    return min(FIRST_RETRY * 2 ** attempts, LAST_RETRY)


def embed_due(app, limit=None):
    """Embed due pending cases, one owner's batch per provider call, until none is due (or `limit`
    cases were tried); returns how many were embedded."""
    embedder, done, tried = Embedder.of(app), 0, 0
    with app.app_context():
        db = get_db()
        while limit is None or tried < limit:
            now = clock.now()
            batch = _claim(db, now, embedder.batch_size if limit is None else min(embedder.batch_size, limit - tried))
            if not batch:
                break
            tried += len(batch)
            done += embed_batch(app, db, embedder, batch, now)
    return done


def _claim(db, now, size):
    first = repository.claim_due(db, now, now + CLAIM)
    if first is None:
        return []
    batch = [first]
    while len(batch) < size and (case := repository.claim_due(db, now, now + CLAIM, first["createdBy"])):
        batch.append(case)
    return batch


def embed_batch(app, db, embedder, cases, now, raise_failure=False):
    """Embed one owner's `cases` in one billed call and store their vectors; on failure they wait for
    a later attempt (and, with `raise_failure`, BackfillStopped says why). Returns how many were
    embedded."""
    ids = [case["_id"] for case in cases]
    owner = find_caller(db, cases[0]["createdBy"])
    if owner is None or not owner.is_active:
        repository.skip(db, ids, "the case's owner is gone or deactivated")
        return 0
    who = Attribution(owner.id, owner.email, owner.org_id, owner.team_id, None, (),
                      {"source": "saved_test_cases", "cases": str(len(cases))})
    hashes = [text_hash(case) for case in cases]
    opened = []
    try:
        vectors, call = embed(_background_context(app, db, owner, now, opened), embedder,
                              [case_text(case) for case in cases], who)
    except Forbidden as exc:  # the owner's organization does not allow the embedding model
        repository.skip(db, ids, exc.message[:300])
        return 0
    except (APIError, PyMongoError) as exc:
        return _failed(db, cases, now, exc, raise_failure)
    finally:
        for tracked in opened:
            tracked.close(None)
    try:
        done = _store(app, db, cases, vectors, hashes, vector_key(call.provider, call.model, len(vectors[0])), call)
    except Exception as exc:  # the call is in the ledger: only storing its vectors failed
        log.exception("Storing the vectors of call %s failed", call.call_id)
        return _failed(db, cases, now, exc, raise_failure)
    log.info("Embedded %d saved test case(s) of user %s (call %s)", done, owner.id, call.call_id)
    return done


def _store(app, db, cases, vectors, hashes, key, call):
    """Write each vector (stamped when written, so another process's pool reads it on its next
    refresh) and put it into this process's pool; returns how many are current."""
    index, done = runtime(app).vector_index, 0
    for case, vector, digest in zip(cases, vectors, hashes):
        stored, written_at = encode(vector), clock.now()
        if repository.put_vector(db, case, key, len(vector), stored, digest, call.call_id, written_at):
            done += 1
            if index is not None:
                index.put(case["createdBy"], key, case["_id"], decode(stored), written_at)
    return done


def _failed(db, cases, now, exc, raise_failure):
    reason = _retry(db, cases, now, exc)
    if raise_failure:
        raise BackfillStopped(reason) from exc
    return 0


def _retry(db, cases, now, exc):
    attempts = min(case["embedding"].get("attempts", 0) for case in cases)
    retry_after = getattr(exc, "headers", None) or {}
    when = now + (timedelta(seconds=int(retry_after["Retry-After"])) if "Retry-After" in retry_after
                  else _backoff(attempts))
    reason = getattr(exc, "message", None) or f"{type(exc).__name__}: {str(exc)[:200]}"
    log.warning("Embedding %d saved test case(s) failed (%s); tried again after %s", len(cases), reason, when)
    try:
        repository.retry_later(db, [case["_id"] for case in cases], when, reason[:300])
    except PyMongoError:
        log.warning("Could not note the failed embedding; the cases are due again when their claim ends")
    return reason


# --- the similarity search RAG runs (registered on the runtime as reference_search) ---

def new_index(app):
    db_of = lambda: get_db(app)  # noqa: E731 - read at call time: tests swap the store
    return VectorIndex(
        app.config["RAG_INDEX_MAX_MB"] * 1024 * 1024,
        load=lambda owner, key: _decoded(repository.vectors_of(db_of(), owner, key)),
        changed=lambda owner, key, since: _decoded(
            repository.vectors_of(db_of(), owner, key, None if since is None else since - CLOCK_SKEW)))


def _decoded(rows):
    return [(case_id, decode(vector), updated_at) for case_id, vector, updated_at in rows]


def search(index, db, owner, key, query, limit, threshold):
    """[(case, cosine)] of the owner's saved cases most similar to `query`, best first: at most
    `limit`, none below `threshold`. A case deleted by another process since the pool read it is
    left out (and dropped from the pool), and the search goes on past it."""
    wanted = limit + 8
    while True:
        found = index.search(owner, key, query, wanted, threshold)
        cases = repository.cases_by_ids(db, owner, [case_id for case_id, _ in found])
        gone = [case_id for case_id, _ in found if case_id not in cases]
        for case_id in gone:
            index.drop(owner, case_id)
        if not gone or len(found) - len(gone) >= limit or len(found) < wanted:
            break
    return [(cases[case_id], round(similarity, 4)) for case_id, similarity in found if case_id in cases][:limit]


# --- the worker thread ---

def start_worker(app, stop):
    """A daemon thread that embeds due cases when woken (a case was saved) or every interval."""
    wake = runtime(app).embeddings_wake = threading.Event()

    def loop():
        while not stop.is_set():
            wake.wait(app.config["BACKGROUND_INTERVAL_SECONDS"])
            wake.clear()
            try:
                embed_due(app)
            except PyMongoError as exc:
                log.warning("Embedding pass skipped, database unavailable: %s", exc)
            except Exception:
                log.exception("Embedding pass failed")

    thread = threading.Thread(target=loop, name="tokenledger-embeddings", daemon=True)
    thread.start()
    return thread


def wake(app):
    event = runtime(app).embeddings_wake
    if event is not None:
        event.set()


# --- the backfill (scripts/embed_cases.py) ---

def key_prefix(embedder):
    """What the key of a current vector starts with: provider/model/, and the length when configured."""
    prefix = f"{embedder.provider.name}/{embedder.model}/"
    return prefix + (str(embedder.dimensions) if embedder.dimensions else "")


def _current_keys(embedder):
    """The pattern of a current vector's key: this provider and model, of the configured length."""
    return "^" + re.escape(key_prefix(embedder)) + ("$" if embedder.dimensions else r"[0-9]+$")


def backfill(app, checkpoint, limit=None, progress=lambda done: None):
    """Embed every case with no current vector (none yet, or one of another model) in batches, each
    batch one owner's, resuming after the case `checkpoint` (a Checkpoint) last recorded. Returns
    (embedded, skipped: not embedded for good, e.g. their owner is gone); stops at the first batch
    the provider or the budgets refuse (BackfillStopped), its cases due again for the worker."""
    embedder = Embedder.of(app)
    prefix, pattern, embedded, skipped = key_prefix(embedder), _current_keys(embedder), 0, 0
    with app.app_context():
        db = get_db()
        after = checkpoint.resume_after(prefix)
        while limit is None or embedded + skipped < limit:
            size = embedder.batch_size if limit is None else min(embedder.batch_size, limit - embedded - skipped)
            page = repository.not_embedded_with(db, pattern, after, size)
            if not page:
                break
            now = clock.now()
            # Claimed as the worker claims (a case the worker holds is left to it, and counted skipped).
            claimed = [repository.claim_for_backfill(db, case["_id"], text_hash(case), now, now + CLAIM)
                       for case in page]
            skipped += sum(1 for case in claimed if case is None)
            for owner_cases in _by_owner([case for case in claimed if case is not None]):
                done = embed_batch(app, db, embedder, owner_cases, now, raise_failure=True)
                embedded, skipped = embedded + done, skipped + len(owner_cases) - done
                progress(len(owner_cases))
            after = page[-1]["_id"]
            checkpoint.save(prefix, after, embedded, skipped)
    return embedded, skipped


def _by_owner(cases):
    groups = {}
    for case in cases:
        groups.setdefault(case["createdBy"], []).append(case)
    return list(groups.values())


def backfill_total(app, checkpoint):
    embedder = Embedder.of(app)
    with app.app_context():
        return repository.count_not_embedded_with(get_db(), _current_keys(embedder),
                                                  checkpoint.resume_after(key_prefix(embedder)))


class BackfillStopped(Exception):
    """A batch failed (the provider, the budgets or the database); its cases wait for a later try."""


class Checkpoint:
    """The backfill's place in a JSON file: the key prefix it embeds for and the last case done, so a
    run stopped anywhere resumes after it (a checkpoint of another model starts over)."""

    def __init__(self, path):
        self.path = path

    def resume_after(self, prefix):
        try:
            with open(self.path, encoding="utf-8") as handle:
                saved = json.load(handle)
            return ObjectId(saved["after"]) if saved.get("keyPrefix") == prefix else None
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError, InvalidId):
            log.warning("The checkpoint %s cannot be read: starting from the first case", self.path)
            return None

    def save(self, prefix, after, embedded, skipped):
        temporary = f"{self.path}.tmp"
        with open(temporary, "w", encoding="utf-8") as handle:
            json.dump({"keyPrefix": prefix, "after": str(after), "embedded": embedded, "skipped": skipped}, handle)
        os.replace(temporary, self.path)
