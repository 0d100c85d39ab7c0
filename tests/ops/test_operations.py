"""Operations that must be safe: scripts on the wrong store or an unreachable database, the
bootstrap admin under concurrent workers, and gunicorn with several workers."""
import logging
import runpy
import subprocess
import sys
import threading
import time

import mongomock
import pytest

from backend.startup import start_up_database
from backend.auth import repository
from backend.clock import utc_now
from backend.auth.services import ensure_admin
from backend.db import USERS, get_db
from backend.runtime import runtime
from tests.helpers import ROOT, create_user

UNREACHABLE = "mongodb://127.0.0.1:9/?directConnection=true"


@pytest.mark.parametrize("args, action", [
    (["replay-spool"], "replay the spool into"),
    (["create-indexes"], "index"),
    (["create-admin", "--email", "ops@example.com", "--password", "long-enough"], "create an admin in"),
    (["rebuild-rollups"], "rebuild the rollups of"),
    (["apply-retention", "--older-than", "30", "--mode", "delete"], "delete records in"),
])
def test_commands_that_change_data_refuse_the_embedded_store(make_app, args, action):
    app = make_app(TESTING=False)
    runtime(app).spool.append([{"callId": "kept"}])
    result = app.test_cli_runner().invoke(args=args)
    assert result.exit_code == 4
    assert result.output == (f"Error: MONGO_URI is not set: refusing to {action} the embedded in-memory store, "
                             "which is discarded on exit\n")
    assert runtime(app).spool.count() == 1


def test_read_only_commands_still_run_on_the_embedded_store(make_app):
    runner = make_app(TESTING=False).test_cli_runner()
    assert runner.invoke(args=["rebuild-rollups", "--check"]).exit_code == 0
    assert runner.invoke(args=["apply-retention", "--older-than", "30", "--mode", "delete", "--dry-run"]).exit_code == 0


def test_an_unreachable_database_is_one_line_and_exit_3(make_app):
    app = make_app(MONGO_URI=UNREACHABLE, MONGO_TIMEOUT_MS=200, AUTO_CREATE_INDEXES=False)
    runner = app.test_cli_runner()
    for args in (["rebuild-rollups", "--check"], ["create-indexes"], ["apply-retention", "--older-than", "9",
                                                                      "--mode", "delete"]):
        result = runner.invoke(args=args)
        assert result.exit_code == 3, result.output
        assert result.output == "Error: database unreachable: 127.0.0.1:9: [Errno 111] Connection refused\n"


def test_check_tells_differences_from_database_down(app, make_app):
    """Exit 1 means the rollups differ from the ledger; 3 means nothing could be compared."""
    from backend.db import USAGE_DAILY_TOTALS

    with app.app_context():
        get_db()[USAGE_DAILY_TOTALS].insert_one({"date": "2026-01-01", "provider": "openai", "modelName": "m",
                                                 "operation": "test_generation", "totalTokens": 5, "requests": 1})
    assert app.test_cli_runner().invoke(args=["rebuild-rollups", "--check"]).exit_code == 1
    down = make_app(MONGO_URI=UNREACHABLE, MONGO_TIMEOUT_MS=200, AUTO_CREATE_INDEXES=False)
    assert down.test_cli_runner().invoke(args=["rebuild-rollups", "--check"]).exit_code == 3


def _script(*args):
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin"})


def test_scripts_parse_their_arguments_before_building_the_app():
    started = time.perf_counter()
    result = _script("scripts/replay_spool.py", "--help")
    assert result.returncode == 0 and result.stdout.startswith("Usage: replay_spool.py")
    assert "MONGO_URI" not in result.stderr  # no app was built, so no store warning either
    usage = _script("scripts/rebuild_rollups.py", "--from", "yesterday")
    assert usage.returncode == 2 and "Invalid value for '--from'" in usage.stderr
    assert "MONGO_URI" not in usage.stderr
    assert time.perf_counter() - started < 20


def test_a_script_with_a_bad_setting_is_one_line_and_exit_4():
    result = subprocess.run([sys.executable, "scripts/create_indexes.py"], cwd=ROOT, capture_output=True, text=True,
                            timeout=60, env={"PATH": "/usr/bin:/bin", "MONGO_URI": "mongodb://db:27017"})
    assert result.returncode == 4
    assert result.stderr.strip().splitlines() == [
        "Configuration error: JWT_SECRET_KEY is required when MONGO_URI is set"]


def test_two_workers_bootstrapping_the_admin_at_once_both_start(make_app, monkeypatch):
    """Both find no account, both insert; the unique index lets one in and the other sees it exists."""
    shared = mongomock.MongoClient(tz_aware=True)
    find_by_email = repository.find_by_email
    both_looked = threading.Barrier(2, timeout=10)
    inserts = threading.Lock()  # the server applies one insert at a time; mongomock needs telling
    insert_user = repository.insert_user

    looked = set()

    def racing_find(db, email):
        user = find_by_email(db, email)
        worker = threading.current_thread().name
        if worker.startswith("worker") and worker not in looked:
            looked.add(worker)
            both_looked.wait()
        return user

    def serial_insert(*args, **kwargs):
        with inserts:
            return insert_user(*args, **kwargs)

    # Two workers' apps on one database; their start-up (what each gunicorn worker runs) races.
    workers = [make_app(MONGO_CLIENT=shared) for _ in range(2)]
    for app in workers:
        app.config.update(ADMIN_EMAIL="root@example.com", ADMIN_PASSWORD="bootstrap-pass")
    monkeypatch.setattr(repository, "find_by_email", racing_find)
    monkeypatch.setattr(repository, "insert_user", serial_insert)
    errors = []

    def start(app):
        try:
            start_up_database(app)
        except Exception as exc:  # the bug: the loser's duplicate key killed the worker's boot
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(app,), name=f"worker-{n}") for n, app in enumerate(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert get_db(workers[0])[USERS].count_documents({"email": "root@example.com", "role": "admin"}) == 1


def test_a_duplicate_key_on_insert_is_exists(app, db, monkeypatch):
    create_user(app, "root@example.com", role="admin")
    real_find = repository.find_by_email
    calls = []

    def first_miss(db, email):
        calls.append(email)
        return None if len(calls) == 1 else real_find(db, email)

    monkeypatch.setattr(repository, "find_by_email", first_miss)
    user, outcome = ensure_admin(db, "root@example.com", "bootstrap-pass", now=utc_now())
    assert outcome == "exists" and user["role"] == "admin"


def test_the_bootstrap_never_promotes_an_existing_account(make_app, caplog):
    first = make_app()
    create_user(first, "boss@example.com")
    with caplog.at_level(logging.WARNING, logger="backend"):
        make_app(MONGO_CLIENT=get_db(first).client, ADMIN_EMAIL="boss@example.com", ADMIN_PASSWORD="bootstrap-pass")
    assert get_db(first)[USERS].find_one({"email": "boss@example.com"})["role"] == "user"
    assert ("ADMIN_EMAIL boss@example.com belongs to an existing account that is not an active admin; it is left "
            "as it is (promote it explicitly with scripts/create_admin.py)") in caplog.text


def test_gunicorn_refuses_several_workers_without_mongo_uri():
    refusal = runpy.run_path(str(ROOT / "gunicorn.conf.py"))["refusal"]
    assert refusal(1, {}) is None
    assert refusal(2, {"MONGO_URI": "mongodb://db:27017", "JWT_SECRET_KEY": "x" * 32}) is None
    assert refusal(2, {}).startswith("Configuration error: 2 workers need MONGO_URI")
    assert refusal(1, {"RATELIMIT_AUTH": "often"}).startswith("Configuration error: RATELIMIT_AUTH must be")
    result = subprocess.run([sys.executable, "-m", "gunicorn", "-w", "3", "-b", "127.0.0.1:0", "wsgi:app"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin:/bin"})
    assert result.returncode == 4
    assert result.stderr.strip().splitlines()[-1] == (
        "Configuration error: 3 workers need MONGO_URI: without it each worker has its own in-memory store and "
        "random JWT key; set MONGO_URI and JWT_SECRET_KEY, or run one worker")
