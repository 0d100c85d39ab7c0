"""The ledger-outcome migration: old records and rollups gain outcome "ok", the old unique index goes, once."""
from datetime import datetime, timezone

from backend.db import MIGRATIONS, USAGE, USAGE_DAILY, get_db
from backend.usage.migrations import API_KEYS, ORGANIZATIONS, OUTCOMES, migrate
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

        assert migrate(db, NOW) == [OUTCOMES, ORGANIZATIONS, API_KEYS]
        assert db[USAGE].find_one()["outcome"] == "ok" and db[USAGE_DAILY].find_one()["outcome"] == "ok"
        assert "date_1_userId_1_provider_1_modelName_1_operation_1" not in db[USAGE_DAILY].index_information()
        assert migrate(db, NOW) == []
        assert db[MIGRATIONS].count_documents({}) == 3


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
