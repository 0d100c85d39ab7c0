"""A rollup write that fails after the ledger write is found by --check and removed by a rebuild."""
from datetime import timedelta

import mongomock
import pytest
from pymongo.errors import AutoReconnect

from backend.runtime import runtime
from backend.db import USAGE, USAGE_BATCHES, USAGE_DAILY, get_db
from backend.usage.rollups import ROLLUPS
from backend.usage.services import deactivate
from tests.helpers import bearer, create_user, insert_records, usage_record, utc


def test_check_finds_drift_from_failed_rollup_writes_and_rebuild_removes_it(app, monkeypatch, caplog):
    user = create_user(app, "u@example.com")
    insert_records(app, [usage_record(user, utc(2024, 1, 10, 12), 100, 50, 0.0001)])

    real_bulk_write = mongomock.collection.Collection.bulk_write

    def rollups_down(self, *args, **kwargs):
        if self.name in {rollup.collection for rollup in ROLLUPS}:
            raise AutoReconnect("rollup shard unavailable")
        return real_bulk_write(self, *args, **kwargs)

    monkeypatch.setattr(mongomock.collection.Collection, "bulk_write", rollups_down)
    missed = [usage_record(user, utc(2024, 1, 11, 9), 300, 20, 0.0002), usage_record(user, utc(2024, 2, 3), 7, 3, 0.0)]
    missed[0]["tags"] = ["ci", "feature:login"]
    # The write fails after the ledger took the records: their batch stays open (the caller spools them).
    with pytest.raises(AutoReconnect):
        insert_records(app, missed)
    monkeypatch.setattr(mongomock.collection.Collection, "bulk_write", real_bulk_write)
    with app.app_context():
        assert get_db()[USAGE].count_documents({}) == 3
        assert get_db()[USAGE_BATCHES].count_documents({}) == 1  # the batch stays open

    runner = app.test_cli_runner()
    check = runner.invoke(args=["rebuild-rollups", "--check"])
    assert check.exit_code == 1
    assert "drift daily_totals 2024-01-11/openai/gpt-4o-mini/test_generation/ok promptTokens" in check.output
    assert "drift daily_totals 2024-01-11/openai/gpt-4o-mini/test_generation/ok/36 promptTokens" in check.output
    # Five fields differ for the first missed call (prompt, completion, total tokens, cost,
    # requests), four for the second (it cost 0), in each of the five rollups without tags;
    # the first call's two tags make 2 x 5 in each of the three tag rollups, and each call counts once
    # more under tag null in each of them (5 + 4 each): 45 + 30 + 27 = 102; each is found in the
    # day's sums and again in its quarter-hour slot (09:00 is slot 36, 00:00 slot 0): 204.
    assert "204 difference(s) in the beginning .. the end (whole months)" in check.output
    only_org = runner.invoke(args=["rebuild-rollups", "--check", "--from", "2024-02-01", "--to", "2024-02-29"])
    assert "drift org_monthly " in only_org.output and "drift tag_monthly " in only_org.output

    rebuilt = runner.invoke(args=["rebuild-rollups", "--from", "2024-01-01", "--to", "2024-02-29"])
    assert rebuilt.exit_code == 0
    assert rebuilt.output.strip() == ("rebuilt 2024-01-01 .. 2024-02-29 (whole months): "
                                      "3 daily_totals, 4 tag_monthly, 2 org_monthly, 4 org_tag_monthly, "
                                      "2 user_monthly, 2 user_operation_monthly, 4 user_tag_monthly and "
                                      "3 daily documents")
    assert runner.invoke(args=["rebuild-rollups", "--check"]).exit_code == 0
    again = runner.invoke(args=["rebuild-rollups"])
    assert again.exit_code == 0 and runner.invoke(args=["rebuild-rollups", "--check"]).exit_code == 0
    # Finishing the interrupted batch afterwards leaves the rebuilt rollups as they are.
    assert runtime(app).writer.recover(timedelta(0)) == 2
    assert runner.invoke(args=["rebuild-rollups", "--check"]).exit_code == 0

    client = app.test_client()
    create_user(app, "admin@example.com", role="admin")
    dashboard = client.get("/admin/openai/dashboard", headers=bearer(client, "admin@example.com")).json["data"]
    assert (dashboard["totalRequests"], dashboard["totalTokens"]) == (3, 150 + 320 + 10)


def test_a_range_check_only_looks_at_its_months(app):
    user = create_user(app, "u@example.com")
    insert_records(app, [usage_record(user, utc(2024, 1, 10), 100, 50, 0.0001)])
    with app.app_context():
        get_db()[USAGE_DAILY].update_many({}, {"$inc": {"totalTokens": 1}})
    runner = app.test_cli_runner()
    assert runner.invoke(args=["rebuild-rollups", "--check", "--from", "2024-03-01", "--to", "2024-03-31"]).exit_code == 0
    assert runner.invoke(args=["rebuild-rollups", "--check", "--from", "2024-01-20", "--to", "2024-01-20"]).exit_code == 1


def test_soft_deleting_records_is_reflected_in_the_rollups(app):
    user = create_user(app, "u@example.com")
    other = create_user(app, "o@example.com")
    insert_records(app, [usage_record(user, utc(2024, 1, 10), 100, 50, 0.0001),
                         usage_record(user, utc(2024, 1, 11), 200, 50, 0.0002),
                         usage_record(other, utc(2024, 1, 11), 5, 5, 0.0)])
    with app.app_context():
        assert deactivate(get_db(), {"userId": user["_id"], "date": "2024-01-11"}) == 1
        assert deactivate(get_db(), {"userId": user["_id"], "date": "2024-01-11"}) == 0
    assert app.test_cli_runner().invoke(args=["rebuild-rollups", "--check"]).exit_code == 0
    client = app.test_client()
    create_user(app, "admin@example.com", role="admin")
    data = client.get("/admin/openai/dashboard", headers=bearer(client, "admin@example.com")).json["data"]
    assert (data["totalRequests"], data["totalTokens"], data["uniqueUsers"]) == (2, 160, 2)


def test_a_retried_write_is_neither_recorded_nor_rolled_up_twice(app):
    user = create_user(app, "u@example.com")
    record = usage_record(user, utc(2024, 1, 10), 100, 50, 0.0001)
    insert_records(app, [record])
    insert_records(app, [record])
    with app.app_context():
        assert get_db()[USAGE].count_documents({}) == 1
        assert get_db()[USAGE_DAILY].find_one()["requests"] == 1
    assert app.test_cli_runner().invoke(args=["rebuild-rollups", "--check"]).exit_code == 0
