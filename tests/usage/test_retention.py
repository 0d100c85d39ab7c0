"""Retention: deactivate or delete old ledger records with the rollups kept consistent; the optional TTL."""
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from backend.db import USAGE, USAGE_DAILY, get_db
from backend.indexes import ensure_indexes
from backend.usage import rollups
from tests.helpers import create_user, insert_records, usage_record

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def ledger(app):
    """Records 100, 45, 31, 29 and 0 days old (noon UTC), one already inactive at 45 days."""
    user = create_user(app, "dev@example.com")
    now = datetime.now(timezone.utc).replace(hour=12, minute=0, second=0, microsecond=0)
    ages = [100, 45, 45, 31, 29, 0]
    records = [usage_record(user, now - timedelta(days=age), prompt=1000 + i, active=(i != 2))
               for i, age in enumerate(ages)]
    insert_records(app, records)
    return now.date()


def state(app):
    with app.app_context():
        db = get_db()
        records = sorted(db[USAGE].find(), key=lambda r: r["promptTokens"])
        daily_prompt = sum(d["promptTokens"] for d in db[USAGE_DAILY].find())
        return [(r["promptTokens"], r["isActive"]) for r in records], daily_prompt, rollups.check(db)


def run(app, *args):
    result = app.test_cli_runner().invoke(args=["apply-retention", *args])
    return result.exit_code, result.output.strip()


def test_deactivate_is_a_soft_delete_that_the_rollups_follow(app, ledger):
    cutoff = (ledger - timedelta(days=30)).isoformat()

    dry = run(app, "--older-than", "30", "--mode", "deactivate", "--dry-run")
    assert dry == (0, f"deactivate records dated before {cutoff}: 3 matched, 3 would change")
    assert state(app)[0] == [(1000, True), (1001, True), (1002, False), (1003, True), (1004, True), (1005, True)]

    assert run(app, "--older-than", "30", "--mode", "deactivate") == (
        0, f"deactivate records dated before {cutoff}: 3 matched, 3 changed")
    records, daily_prompt, drift = state(app)
    assert records == [(1000, False), (1001, False), (1002, False), (1003, False), (1004, True), (1005, True)]
    assert daily_prompt == 1004 + 1005 and drift == []

    assert run(app, "--older-than", "30", "--mode", "deactivate") == (
        0, f"deactivate records dated before {cutoff}: 0 matched, 0 changed")


def test_delete_removes_records_active_or_not_and_the_rollups_follow(app, ledger):
    cutoff = (ledger - timedelta(days=40)).isoformat()
    assert run(app, "--older-than", "40", "--mode", "delete", "--dry-run") == (
        0, f"delete records dated before {cutoff}: 3 matched, 3 would change")
    assert len(state(app)[0]) == 6

    assert run(app, "--older-than", "40", "--mode", "delete") == (
        0, f"delete records dated before {cutoff}: 3 matched, 3 changed")
    records, daily_prompt, drift = state(app)
    assert records == [(1003, True), (1004, True), (1005, True)]
    assert daily_prompt == 1003 + 1004 + 1005 and drift == []
    assert run(app, "--older-than", "40", "--mode", "delete") == (
        0, f"delete records dated before {cutoff}: 0 matched, 0 changed")


def test_retention_arguments_are_checked(app):
    assert run(app, "--older-than", "0", "--mode", "delete")[0] == 2
    assert run(app, "--older-than", "30", "--mode", "archive")[0] == 2
    code, output = run(app, "--mode", "delete")
    assert code == 2 and "--older-than" in output


def test_retention_script_runs_from_a_fresh_checkout():
    result = subprocess.run([sys.executable, "scripts/apply_retention.py", "--older-than", "30", "--mode", "delete",
                             "--dry-run"], cwd=ROOT, capture_output=True, text=True, timeout=60,
                            env={"PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    cutoff = (datetime.now(timezone.utc).date() - timedelta(days=30)).isoformat()
    assert result.stdout.strip().splitlines()[-1] == f"delete records dated before {cutoff}: 0 matched, 0 would change"


def test_ledger_ttl_index_follows_the_setting(db):
    db.client.drop_database(db.name)
    created = ensure_indexes(db, ledger_ttl_days=30)
    assert ("openai_token_usage", "timestamp_1", "created") in created
    assert db[USAGE].index_information()["timestamp_1"]["expireAfterSeconds"] == 30 * 86400

    assert ("openai_token_usage", "timestamp_1", "exists") in ensure_indexes(db, ledger_ttl_days=30)
    assert ("openai_token_usage", "timestamp_1", "updated") in ensure_indexes(db, ledger_ttl_days=90)
    assert db[USAGE].index_information()["timestamp_1"]["expireAfterSeconds"] == 90 * 86400

    assert ensure_indexes(db)[-1] == ("openai_token_usage", "timestamp_1", "dropped")
    assert "timestamp_1" not in db[USAGE].index_information()


def test_with_a_ttl_rollup_rebuilds_leave_months_the_ttl_may_have_thinned(make_app):
    app = make_app(LEDGER_TTL_DAYS=45)
    today = datetime.now(timezone.utc).date()
    cutoff = today - timedelta(days=45)
    first_safe = cutoff if cutoff.day == 1 else (cutoff.replace(day=28) + timedelta(days=4)).replace(day=1)
    runner = app.test_cli_runner()

    result = runner.invoke(args=["rebuild-rollups", "--check"])

    assert result.exit_code == 0
    assert result.output.splitlines() == [
        f"LEDGER_TTL_DAYS is set: months before {first_safe} may have expired records, "
        f"so they are left as they are; starting at {first_safe}",
        f"rollups match the ledger for {first_safe} .. the end (whole months)",
    ]
