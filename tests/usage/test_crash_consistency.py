"""A kill at any write point of a ledger batch leaves every view exact after a restart alone.

The writer's batch is its note in openai_token_usage_batches, one ledger insert, then the budget
counters, the rollups and the note's removal: separate writes, not one transaction. Here the
database "dies" at each of those writes in turn (every write operation before it applied, none
after), then the spool is replayed as a restarted worker does: the ledger must hold each call
once, every rollup must equal the ledger (`rebuild_rollups.py --check`) and every budget counter
must equal the ledger.
"""
import mongomock
import pytest
from pymongo.errors import AutoReconnect

from backend.db import BUDGET_COUNTERS, USAGE, USAGE_BATCHES, get_db
from backend.runtime import runtime
from backend.usage import rollups
from tests.helpers import bearer, create_user

WRITES = ("insert_one", "insert_many", "bulk_write", "find_one_and_update", "update_one", "update_many", "delete_one")


class Crash:
    """Counts the store's write operations; the one numbered `at` fails as a dead database would."""

    def __init__(self, monkeypatch, at=None):
        self.count, self.at = 0, at
        for name in WRITES:
            monkeypatch.setattr(mongomock.collection.Collection, name, self._counted(getattr(mongomock.collection.Collection, name)))

    def _counted(self, write):
        def counted(collection, *args, **kwargs):
            self.count += 1
            if self.count == self.at:
                raise AutoReconnect("the database died here")
            return write(collection, *args, **kwargs)

        return counted


def _spooled_calls(make_app):
    """An app whose three answered calls wait in the spool, with a budget on their user's team."""
    app = make_app(LEDGER_WRITES="async", LEDGER_WRITE_INTERVAL_MS=600_000)
    create_user(app, "root@example.com", role="admin")
    user = create_user(app, "dev@example.com")
    client = app.test_client()
    root = bearer(client, "root@example.com")
    assert client.put(f"/admin/openai/budgets/{user['_id']}", json={"tokensPerDay": 10**6}, headers=root).status_code == 200
    headers = bearer(client, "dev@example.com")
    for tags in (["a"], ["a", "b"], []):
        assert client.post("/api/test-generation", json={"prompt": "x", "count": 1, "tags": tags},
                           headers=headers).status_code == 200
    assert runtime(app).spool.count() == 3
    return app


def _assert_exact(app):
    with app.app_context():
        db = get_db()
        records = list(db[USAGE].find())
        assert len(records) == len({r["callId"] for r in records}) == 3
        # A batch noted before the database died at its insert holds no record (recover() drops it).
        noted = [batch["_id"] for batch in db[USAGE_BATCHES].find()]
        assert db[USAGE].count_documents({"batchId": {"$in": noted}}) == 0
        assert rollups.check(db) == []
        total = sum(r["totalTokens"] for r in records)
        counters = {c["owner"].split(":")[0]: c["tokens"] for c in db[BUDGET_COUNTERS].find({"window": "day"})}
    assert set(counters.values()) == {total} and len(counters) == 2  # the user's and the organization's


def test_a_crash_at_any_write_of_a_batch_is_made_exact_by_the_replay(make_app, monkeypatch):
    app = _spooled_calls(make_app)
    counted = Crash(monkeypatch)
    assert runtime(app).writer.replay() == (3, 0)
    monkeypatch.undo()
    _assert_exact(app)
    assert counted.count > 10
    for at in range(1, counted.count + 1):
        app = _spooled_calls(make_app)
        writer = runtime(app).writer
        Crash(monkeypatch, at)
        assert writer.replay() == (0, 3), at  # the database died midway: the batch stays spooled
        monkeypatch.undo()
        assert writer.replay()[1] == 0  # a restarted worker replays the spool
        _assert_exact(app)


def test_a_batch_no_spool_holds_is_finished_by_the_background_recovery(make_app, monkeypatch):
    from datetime import timedelta

    app = make_app(LEDGER_WRITES="async", LEDGER_WRITE_INTERVAL_MS=600_000)
    create_user(app, "dev@example.com")
    client = app.test_client()
    headers = bearer(client, "dev@example.com")
    assert client.post("/api/test-generation", json={"prompt": "x", "count": 1}, headers=headers).status_code == 200
    [record] = runtime(app).spool.contents().records
    Crash(monkeypatch, at=4)  # after the batch note, the insert and a first counter
    with pytest.raises(AutoReconnect):
        runtime(app).writer.write([record])  # and no spool holds it any more (a lost disk)
    monkeypatch.undo()
    with app.app_context():
        assert get_db()[USAGE_BATCHES].count_documents({}) == 1
    assert runtime(app).writer.recover(timedelta(0)) == 1
    with app.app_context():
        db = get_db()
        assert db[USAGE_BATCHES].count_documents({}) == 0 and rollups.check(db) == []
        [record] = db[USAGE].find()
        counters = list(db[BUDGET_COUNTERS].find({"window": "day"}))
    assert [counter["tokens"] for counter in counters] == [record["totalTokens"]] * 2, counters
