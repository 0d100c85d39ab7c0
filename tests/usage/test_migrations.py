"""The ledger-outcome migration: old records and rollups gain outcome "ok", the old unique index goes, once."""
from datetime import datetime, timezone

from backend.db import MIGRATIONS, USAGE, USAGE_DAILY, get_db
from backend.runtime import runtime
from backend.usage.migrations import (
    API_KEYS,
    LEASE_SECONDS,
    ORGANIZATIONS,
    OUTCOMES,
    QUARTER_SLOTS,
    ROLLUP_SHAPES,
    TAG_TOTALS,
    MigrationPending,
    migrate,
)
from tests.helpers import create_user, insert_records, usage_record, utc

NOW = datetime(2026, 11, 23, tzinfo=timezone.utc)


def test_records_from_before_outcomes_are_marked_ok_once(app):
    user = create_user(app, "old@example.com")
    with app.app_context():
        db = get_db()
        old = usage_record(user, utc(2026, 11, 2, 10))
        del old["outcome"]
        insert_records(app, [old])
        db[USAGE_DAILY].update_many({}, {"$unset": {"outcome": ""}})
        db[USAGE_DAILY].create_index([(name, 1) for name in ("date", "userId", "provider", "modelName", "operation")],
                                     unique=True)
        db[MIGRATIONS].delete_many({})

        assert migrate(db, NOW) == [OUTCOMES, ORGANIZATIONS, API_KEYS, ROLLUP_SHAPES, TAG_TOTALS, QUARTER_SLOTS]
        assert db[USAGE].find_one()["outcome"] == "ok" and db[USAGE_DAILY].find_one()["outcome"] == "ok"
        assert "date_1_userId_1_provider_1_modelName_1_operation_1" not in db[USAGE_DAILY].index_information()
        assert migrate(db, NOW) == []
        assert db[MIGRATIONS].count_documents({}) == 6


def test_two_workers_starting_at_once_both_migrate_without_error(app):
    import threading

    user = create_user(app, "old@example.com")
    with app.app_context():
        db = get_db()
        old = usage_record(user, utc(2026, 11, 2, 10))
        del old["outcome"]
        insert_records(app, [old])
        db[MIGRATIONS].delete_many({})
        errors = []

        def start():
            try:
                migrate(db, NOW)
            except Exception as exc:  # a worker whose start-up fails would not serve
                errors.append(exc)

        workers = [threading.Thread(target=start) for _ in range(2)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(10)
        assert errors == []
        assert db[MIGRATIONS].count_documents({"_id": OUTCOMES}) == 1
        assert db[USAGE].count_documents({"outcome": "ok"}) == 1


def test_data_from_before_organizations_moves_to_the_default_organization_once(app):
    from backend.db import USAGE_USER_MONTHLY, USERS
    from backend.orgs.repository import DEFAULT_ORG_ID
    from backend.usage import rollups

    user = create_user(app, "old@example.com")
    with app.app_context():
        db = get_db()
        insert_records(app, [usage_record(user, utc(2026, 11, 2, 10)), usage_record(user, utc(2026, 11, 3, 10))])
        # The shapes of before: no membership anywhere, rollups keyed and uniquely indexed without it.
        db[USERS].update_many({}, {"$unset": {"orgId": "", "orgRole": "", "teamId": ""}})
        db[USAGE].update_many({}, {"$unset": {"orgId": "", "teamId": ""}})
        for rollup in rollups.ROLLUPS:
            db[rollup.collection].drop_indexes()
            db[rollup.collection].update_many({}, {"$unset": {"orgId": "", "teamId": ""}})
        db[USAGE_USER_MONTHLY].create_index([("userId", 1), ("month", 1)], unique=True)
        db[MIGRATIONS].delete_one({"_id": ORGANIZATIONS})

        assert migrate(db, NOW) == [ORGANIZATIONS]
        stored = db[USERS].find_one({"_id": user["_id"]})
        assert (stored["orgId"], stored["orgRole"], stored["teamId"]) == (DEFAULT_ORG_ID, "member", None)
        assert db[USAGE].count_documents({"orgId": DEFAULT_ORG_ID, "teamId": None}) == 2
        assert "userId_1_month_1" not in db[USAGE_USER_MONTHLY].index_information()
        assert rollups.check(db) == []
        # A call made now lands in the migrated rollup documents, not beside them.
        insert_records(app, [usage_record(user, utc(2026, 11, 4, 10))])
        assert db[USAGE_USER_MONTHLY].count_documents({}) == 1 and rollups.check(db) == []
        assert migrate(db, NOW) == []


def test_rollups_of_the_previous_shape_are_rebuilt_and_the_old_tag_rollup_dropped_once(app):
    from bson import ObjectId

    from backend.db import (
        USAGE_DAILY_TOTALS,
        USAGE_ORG_MONTHLY,
        USAGE_ORG_TAG_MONTHLY,
        USAGE_TAG_MONTHLY,
        USAGE_USER_TAG_MONTHLY,
    )
    from backend.usage import rollups

    user = create_user(app, "old@example.com")
    org, team = ObjectId(), ObjectId()
    records = [usage_record(user, utc(2026, 11, 2, 10), 100, 50, 0.25, org_id=org, team_id=team),
               usage_record(user, utc(2026, 11, 2, 11), 10, 5, 0.5, org_id=org),
               usage_record(user, utc(2026, 10, 30, 9), 1, 2, 1.0)]
    records[0]["tags"], records[2]["tags"] = ["ci", "nightly"], ["ci"]
    insert_records(app, records)
    with app.app_context():
        db = get_db()
        # Before: daily_totals keyed (and uniquely indexed) with orgId and teamId, one document per
        # membership and day; the tag rollup daily, keyed by user; no monthly org or tag rollups.
        db[USAGE_DAILY_TOTALS].drop()
        key = ("date", "provider", "modelName", "operation", "outcome", "orgId", "teamId")
        db[USAGE_DAILY_TOTALS].create_index([(name, 1) for name in key], unique=True)
        for record in records:
            db[USAGE_DAILY_TOTALS].insert_one({**{name: record.get(name) for name in key}, "totalTokens": 1,
                                                "requests": 1})
        db["openai_token_usage_daily_tags"].insert_one({"date": "2026-11-02", "tag": "ci", "requests": 1})
        for name in (USAGE_ORG_MONTHLY, USAGE_TAG_MONTHLY, USAGE_ORG_TAG_MONTHLY, USAGE_USER_TAG_MONTHLY):
            db[name].drop()
        db[MIGRATIONS].delete_one({"_id": ROLLUP_SHAPES})
        assert rollups.check(db) != []

        assert migrate(db, NOW) == [ROLLUP_SHAPES]
        assert rollups.check(db) == []
        assert "openai_token_usage_daily_tags" not in db.list_collection_names()
        assert "date_1_provider_1_modelName_1_operation_1_outcome_1_orgId_1_teamId_1" not in (
            db[USAGE_DAILY_TOTALS].index_information())
        # Two days, no organization in the key: 2026-11-02 sums both calls of that day.
        totals = {doc["date"]: (doc["totalTokens"], doc["requests"]) for doc in db[USAGE_DAILY_TOTALS].find()}
        assert totals == {"2026-11-02": (165, 2), "2026-10-30": (3, 1)}
        tags = [(doc["tag"], doc["month"], doc["days"][day]["requests"]) for doc in db[USAGE_TAG_MONTHLY].find()
                for day in doc["days"]]
        assert sorted(row for row in tags if row[0] is not None) == [
            ("ci", "2026-10", 1), ("ci", "2026-11", 1), ("nightly", "2026-11", 1)]
        # Every call once more under tag null: the total a tag's share is of.
        assert sorted(row[1:] for row in tags if row[0] is None) == [("2026-10", 1), ("2026-11", 2)]
        in_org = db[USAGE_ORG_MONTHLY].find({"orgId": org})
        assert sorted((doc["teamId"] == team, doc["days"]["2026-11-02"]["cost"]) for doc in in_org) == [
            (False, 0.5), (True, 0.25)]
        assert migrate(db, NOW) == []


def test_a_worker_waits_for_the_migration_another_one_holds_and_takes_over_a_dead_ones_lease(app):
    from datetime import timedelta

    from backend.clock import utc_now

    with app.app_context():
        db = get_db()
        db[MIGRATIONS].delete_one({"_id": ROLLUP_SHAPES})
        db[MIGRATIONS].insert_one({"_id": f"{ROLLUP_SHAPES}:lease", "takenAt": utc_now()})
        try:
            migrate(db, NOW, wait_seconds=0.5)
            raise AssertionError("a held migration did not make the worker wait")
        except MigrationPending as exc:
            assert ROLLUP_SHAPES in str(exc)
        assert db[MIGRATIONS].find_one({"_id": ROLLUP_SHAPES}) is None

        # The holder died long ago: its lease is taken over and the migration applied.
        stale = utc_now() - timedelta(seconds=LEASE_SECONDS + 1)
        db[MIGRATIONS].update_one({"_id": f"{ROLLUP_SHAPES}:lease"}, {"$set": {"takenAt": stale}})
        assert migrate(db, NOW, wait_seconds=0) == [ROLLUP_SHAPES]
        assert db[MIGRATIONS].find_one({"_id": f"{ROLLUP_SHAPES}:lease"}) is None


def test_a_starting_worker_serves_while_another_migrates_and_finishes_in_the_background(app, monkeypatch):
    from backend import startup
    from backend.background import run_once
    from backend.clock import utc_now

    monkeypatch.setattr(startup, "START_UP_MIGRATION_WAIT_SECONDS", 0)
    with app.app_context():
        db = get_db()
        db[MIGRATIONS].delete_one({"_id": ROLLUP_SHAPES})
        db[MIGRATIONS].insert_one({"_id": f"{ROLLUP_SHAPES}:lease", "takenAt": utc_now()})
    startup.start_up_database(app)
    assert runtime(app).start_up_pending is True
    with app.app_context():  # the other worker finishes
        db[MIGRATIONS].insert_one({"_id": ROLLUP_SHAPES, "appliedAt": NOW, "changed": 0})
        db[MIGRATIONS].delete_one({"_id": f"{ROLLUP_SHAPES}:lease"})
    run_once(app)
    assert runtime(app).start_up_pending is False


def test_calls_answered_while_another_worker_migrates_wait_in_the_spool_and_land_once(make_app, monkeypatch,
                                                                                      tmp_path):
    """A worker that starts while another rebuilds the rollups serves, but keeps its records in the
    spool (written then, the rebuild could count them twice or miss them); once the migration is
    done, its background pass writes them: ledger, rollups and counters exactly once."""
    from backend import startup
    from backend.background import run_once
    from backend.clock import utc_now
    from backend.usage import rollups
    from tests.helpers import bearer

    first = make_app()
    shared = get_db(first).client
    with first.app_context():
        db = get_db()
        db[MIGRATIONS].delete_one({"_id": ROLLUP_SHAPES})
        db[MIGRATIONS].insert_one({"_id": f"{ROLLUP_SHAPES}:lease", "takenAt": utc_now(), "owner": "other worker"})
    monkeypatch.setattr(startup, "START_UP_MIGRATION_WAIT_SECONDS", 0)
    for writes in ("sync", "async"):
        second = make_app(MONGO_CLIENT=shared, LEDGER_WRITES=writes, SPOOL_PATH=str(tmp_path / f"{writes}.jsonl"))
        assert runtime(second).migrations_done is False
        create_user(second, f"{writes}@example.com")
        client = second.test_client()
        headers = bearer(client, f"{writes}@example.com")
        for _ in range(3):
            response = client.post("/api/test-generation", json={"prompt": "Login", "count": 1}, headers=headers)
            assert response.status_code == 200
        assert runtime(second).writer.replay() == (0, 3)
        with second.app_context():
            assert get_db()[USAGE].count_documents({"userEmail": f"{writes}@example.com"}) == 0
        assert runtime(second).spool.count() == 3
        run_once(second)  # the other worker is still at it
        assert runtime(second).spool.count() == 3

    with first.app_context():  # the other worker finishes
        db[MIGRATIONS].insert_one({"_id": ROLLUP_SHAPES, "appliedAt": NOW, "changed": 0})
        db[MIGRATIONS].delete_one({"_id": f"{ROLLUP_SHAPES}:lease"})
    run_once(second)
    assert runtime(second).migrations_done is True and runtime(second).spool.count() == 0
    with second.app_context():
        assert get_db()[USAGE].count_documents({"userEmail": "async@example.com"}) == 3
        assert rollups.check(get_db()) == []


def test_a_failing_migration_releases_its_lease_and_the_next_attempt_applies_it(app, monkeypatch):
    from pymongo.errors import AutoReconnect

    from backend.usage import migrations

    real_rebuild, failures = migrations.rebuild, []

    def rebuild_once_down(db, **options):
        if not failures:
            failures.append(1)
            raise AutoReconnect("primary stepped down")
        return real_rebuild(db, **options)

    monkeypatch.setattr(migrations, "rebuild", rebuild_once_down)
    with app.app_context():
        db = get_db()
        db[MIGRATIONS].delete_one({"_id": ROLLUP_SHAPES})
        try:
            migrate(db, NOW, wait_seconds=0)
            raise AssertionError("the failure did not reach the caller")
        except AutoReconnect:
            pass
        assert db[MIGRATIONS].count_documents({"_id": {"$regex": "lease"}}) == 0
        assert migrate(db, NOW, wait_seconds=0) == [ROLLUP_SHAPES]


def test_a_long_migration_keeps_its_lease_fresh_and_only_its_owner_releases_it(app, monkeypatch):
    import time

    from backend.usage import migrations

    seen = []

    def slow_step(db, now):
        lease = db[MIGRATIONS].find_one({"_id": "slow:lease"})
        time.sleep(0.3)
        seen.append((lease, db[MIGRATIONS].find_one({"_id": "slow:lease"})))
        return 0

    monkeypatch.setattr(migrations, "HEARTBEAT_SECONDS", 0.05)
    monkeypatch.setattr(migrations, "MIGRATIONS_IN_ORDER", (("slow", slow_step),))
    with app.app_context():
        db = get_db()
        assert migrate(db, NOW) == ["slow"]
        (before, during), = seen
        assert during["owner"] == before["owner"] and during["takenAt"] > before["takenAt"]
        assert db[MIGRATIONS].find_one({"_id": "slow:lease"}) is None
        # A lease someone else took over is theirs: releasing ours leaves it.
        db[MIGRATIONS].insert_one({"_id": "slow:lease", "takenAt": NOW, "owner": "someone else"})
        migrations._release(db, "slow", "not them")
        assert db[MIGRATIONS].find_one({"_id": "slow:lease"})["owner"] == "someone else"


def test_check_counts_a_key_stored_twice(app):
    from backend.db import USAGE_TAG_MONTHLY
    from backend.usage import rollups

    user = create_user(app, "u@example.com")
    record = usage_record(user, utc(2026, 11, 2, 10))
    record["tags"] = ["ci"]
    insert_records(app, [record])
    with app.app_context():
        db = get_db()
        copy = db[USAGE_TAG_MONTHLY].find_one({}, {"_id": 0})
        db[USAGE_TAG_MONTHLY].drop_indexes()
        db[USAGE_TAG_MONTHLY].insert_one(copy)
        assert rollups.check(db) == [{"rollup": "tag_monthly", "key": "ci/2026-11/ok", "field": "documents",
                                      "stored": 2, "expected": 1}]
        rollups.rebuild(db)
        assert rollups.check(db) == []
