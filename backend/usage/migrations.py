"""Changes to stored ledger data, applied once at start-up (and by scripts/create_indexes.py).

Each migration is idempotent: its steps can run twice without harm, and it is marked done only
after they all ran. Workers starting at once run each migration one at a time: the first takes
a lease on it, the others wait until it is done (and take over a lease left by a worker that died).
"""
import logging
import threading
import time
import uuid
from contextlib import contextmanager
from datetime import date, timedelta

from pymongo import ASCENDING
from pymongo.errors import DuplicateKeyError, OperationFailure, PyMongoError

from backend.clock import utc_now
from backend.db import MIGRATIONS, USAGE
from backend.usage.model import OLD_RECORD_DEFAULTS, F
from backend.usage.rollups import MEMBERSHIP, ROLLUPS, rebuild

log = logging.getLogger("backend.usage")
OUTCOMES = "2026-11-ledger-outcomes"
ORGANIZATIONS = "2026-11-organizations"
API_KEYS = "2026-11-api-keys"
ROLLUP_SHAPES = "2026-11-rollup-shapes"
TAG_TOTALS = "2026-12-tag-totals"
QUARTER_SLOTS = "2026-12-quarter-slots"
# A worker that dies while migrating leaves its lease; another takes it over after this long. The
# worker applying a migration renews its lease every HEARTBEAT_SECONDS, however long it takes.
LEASE_SECONDS = 600
HEARTBEAT_SECONDS = 60
WAIT_STEP_SECONDS = 0.2
OLD_TAG_ROLLUP = "openai_token_usage_daily_tags"
RESHAPED = ("daily_totals", "tag_monthly", "org_monthly", "org_tag_monthly", "user_tag_monthly")


def _drop_outdated_key_indexes(db):
    """A rollup's unique index on its key from before the key grew would refuse documents that
    differ only in the new fields."""
    for rollup in ROLLUPS:
        current = "_".join(f"{name}_1" for name in rollup.key)
        for name, info in db[rollup.collection].index_information().items():
            if not info.get("unique") or name == current:
                continue
            try:
                db[rollup.collection].drop_index(name)
            except OperationFailure:
                log.info("Index %s.%s was already dropped by another worker", rollup.collection, name)


def _record_outcomes(db, now):
    """Records from before outcomes existed were all successful requests, and their rollup
    documents were keyed without an outcome (with a unique index that would now refuse a
    second outcome for the same day, user and model)."""
    outcome = {F.OUTCOME: OLD_RECORD_DEFAULTS[F.OUTCOME]}
    changed = db[USAGE].update_many({F.OUTCOME: {"$exists": False}},
                                    {"$set": {**outcome, F.ESTIMATED: OLD_RECORD_DEFAULTS[F.ESTIMATED]}}).modified_count
    _drop_outdated_key_indexes(db)
    for rollup in ROLLUPS:
        if F.OUTCOME in rollup.key:
            db[rollup.collection].update_many({F.OUTCOME: {"$exists": False}}, {"$set": outcome})
    return changed


# Steps of a migration that change collections other packages own, registered by create_app
# (migration name -> [step(db, now)]), so the ledger's migrations import no other package.
_OWNED_ELSEWHERE = {}


def register_step(name, step):
    """Run `step(db, now)` first when the migration `name` is applied."""
    steps = _OWNED_ELSEWHERE.setdefault(name, [])
    if step not in steps:
        steps.append(step)


def _steps_owned_elsewhere(name, db, now):
    steps = _OWNED_ELSEWHERE.get(name)
    if not steps:
        raise RuntimeError(f"Migration {name} needs the steps create_app registers; none is registered")
    for step in steps:
        step(db, now)


def _organizations(db, now):
    """Before organizations every user, and so every call, belonged to the default one, in no
    team: users (orgs' registered step), ledger records and rollup documents say so, and the
    rollups' unique keys gain the two fields."""
    _steps_owned_elsewhere(ORGANIZATIONS, db, now)
    membership = {"$set": {field: OLD_RECORD_DEFAULTS[field] for field in MEMBERSHIP}}
    changed = db[USAGE].update_many({F.ORG_ID: {"$exists": False}}, membership).modified_count
    _drop_outdated_key_indexes(db)
    for rollup in ROLLUPS:
        if F.ORG_ID in rollup.key:
            db[rollup.collection].update_many({F.ORG_ID: {"$exists": False}}, membership)
    return changed


def _api_keys(db, now):
    """The user rollups' keys gained apiKeyId (None, like a missing field, for calls made
    without a key): only their unique indexes change."""
    _drop_outdated_key_indexes(db)
    return 0


def _rollup_shapes(db, now):
    """`daily_totals` lost orgId and teamId (organizations and teams have `org_monthly`), and the
    daily tag rollup keyed by user became `tag_monthly`, `org_tag_monthly` and `user_tag_monthly`:
    those five are emptied, given their unique key index (so nothing can write a key twice), and
    rebuilt from the ledger; the old tag rollup is dropped."""
    _drop_outdated_key_indexes(db)
    db.drop_collection(OLD_TAG_ROLLUP)
    for rollup in ROLLUPS:
        if rollup.name in RESHAPED:
            db[rollup.collection].delete_many({})
            db[rollup.collection].create_index([(field, ASCENDING) for field in rollup.key], unique=True)
    written = rebuild(db, names=RESHAPED)
    log.info("Rollups rebuilt: %s", ", ".join(f"{count} {name}" for name, count in written.items()))
    return 0


def _tag_totals(db, now):
    """The tag rollups gained a row per key counting every call once (tag null: the total a tag's
    share is of), so by=tag reads one rollup: they are rebuilt from the ledger."""
    names = [rollup.name for rollup in ROLLUPS if rollup.fan_out is not None]
    written = rebuild(db, names=names)
    log.info("Tag rollups rebuilt: %s", ", ".join(f"{count} {name}" for name, count in written.items()))
    return 0


def _quarter_slots(db, now):
    """Every rollup gained quarter-hour slots (local days in any time zone): the months the ledger
    still holds are rebuilt from it. Months whose records a TTL already removed keep their UTC
    days as they are (their local-day views count no slots)."""
    first = db[USAGE].find_one({F.IS_ACTIVE: True, F.DATE: {"$type": "string"}}, {F.DATE: 1}, sort=[(F.DATE, 1)])
    if first is None:
        return 0
    written = rebuild(db, date.fromisoformat(first[F.DATE][:7] + "-01"))
    log.info("Rollups rebuilt with quarter-hour slots: %s", ", ".join(f"{count} {name}"
                                                                     for name, count in written.items()))
    return 0


MIGRATIONS_IN_ORDER = ((OUTCOMES, _record_outcomes), (ORGANIZATIONS, _organizations), (API_KEYS, _api_keys),
                       (ROLLUP_SHAPES, _rollup_shapes), (TAG_TOTALS, _tag_totals), (QUARTER_SLOTS, _quarter_slots))


class MigrationPending(RuntimeError):
    """Another worker holds the migration's lease and did not finish within the wait."""


def _done(db, name):
    return db[MIGRATIONS].find_one({"_id": name}, {"_id": 1}) is not None


def _lease_id(name):
    return f"{name}:lease"


def _take_lease(db, name, owner):
    """Whether this worker may run the migration: it took the lease, or took over a stale one."""
    lease, now = _lease_id(name), utc_now()
    try:
        db[MIGRATIONS].insert_one({"_id": lease, "takenAt": now, "owner": owner})
        return True
    except DuplicateKeyError:
        stale = {"_id": lease, "takenAt": {"$lt": now - timedelta(seconds=LEASE_SECONDS)}}
        return db[MIGRATIONS].find_one_and_update(stale, {"$set": {"takenAt": now, "owner": owner}}) is not None


def _release(db, name, owner):
    db[MIGRATIONS].delete_one({"_id": _lease_id(name), "owner": owner})


@contextmanager
def _renewed(db, name, owner):
    """Keep this worker's lease fresh while the migration runs, so nobody takes it over."""
    stop = threading.Event()

    def renew():
        while not stop.wait(HEARTBEAT_SECONDS):
            try:
                db[MIGRATIONS].update_one({"_id": _lease_id(name), "owner": owner}, {"$set": {"takenAt": utc_now()}})
            except PyMongoError as exc:
                log.warning("Migration %s: lease not renewed: %s", name, exc)

    thread = threading.Thread(target=renew, name=f"migration-lease-{name}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(HEARTBEAT_SECONDS)


def _wait_for(db, name, wait_seconds, owner):
    """Wait until the migration is done by another worker or its lease can be taken over;
    True when this worker must run it."""
    deadline = time.monotonic() + wait_seconds
    while True:
        if _done(db, name):
            return False
        if _take_lease(db, name, owner):
            if not _done(db, name):
                return True
            _release(db, name, owner)  # finished just before the lease was taken
            return False
        if time.monotonic() >= deadline:
            raise MigrationPending(f"Migration {name} is being applied by another worker")
        time.sleep(WAIT_STEP_SECONDS)


def migrate(db, now, wait_seconds=LEASE_SECONDS):
    """Apply every migration not yet marked done; returns the names this worker applied. Raises
    MigrationPending when another worker holds one for longer than `wait_seconds`; a step that
    fails releases its lease (and raises), so the next attempt of any worker runs it again."""
    applied, owner = [], uuid.uuid4().hex
    for name, step in MIGRATIONS_IN_ORDER:
        if not _wait_for(db, name, wait_seconds, owner):
            continue
        try:
            with _renewed(db, name, owner):
                changed = step(db, now)
            db[MIGRATIONS].update_one({"_id": name},
                                      {"$setOnInsert": {"appliedAt": now}, "$inc": {"changed": changed}}, upsert=True)
        finally:
            _release(db, name, owner)
        log.info("Migration %s applied (%d ledger records changed)", name, changed)
        applied.append(name)
    return applied


def migration_report(db):
    """[(name, applied at, ledger records changed)] of the applied migrations, in order."""
    done = {doc["_id"]: doc for doc in db[MIGRATIONS].find({"appliedAt": {"$exists": True}})}
    return [(name, done[name]["appliedAt"], done[name].get("changed", 0))
            for name, _ in MIGRATIONS_IN_ORDER if name in done]
