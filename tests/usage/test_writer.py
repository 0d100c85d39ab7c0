"""The asynchronous ledger writer: nothing on the response path, everything in the ledger after,
and nothing answered lost when the process is killed."""
import signal
import subprocess
import sys
import textwrap
import time

from backend.db import USAGE, USAGE_BATCHES, USAGE_USER_MONTHLY, get_db
from backend.runtime import runtime
from backend.usage import rollups
from backend.usage.spool import Spool
from tests.helpers import ROOT, TEST_SECRET, bearer, create_user, left_by_a_gone_process


def test_records_wait_in_the_spool_until_the_writer_moves_them_in_one_batch(make_app, tmp_path):
    app = make_app(LEDGER_WRITES="async", LEDGER_WRITE_INTERVAL_MS=60_000)
    create_user(app, "dev@example.com")
    client = app.test_client()
    headers = bearer(client, "dev@example.com")
    calls = [client.post("/api/test-generation", json={"prompt": "x", "count": 1}, headers=headers)
             for _ in range(5)]
    assert [response.status_code for response in calls] == [200] * 5
    db = get_db(app)
    # Nothing reached the database on the requests' path; all five are in the write-ahead log.
    assert db[USAGE].count_documents({}) == 0
    assert runtime(app).spool.count() == 5

    assert runtime(app).writer.replay() == (5, 0)
    records = list(db[USAGE].find())
    assert sorted(r["callId"] for r in records) == sorted(c.json["data"]["usage"]["callIds"][0] for c in calls)
    month = db[USAGE_USER_MONTHLY].find_one()
    assert sum(day["requests"] for day in month["days"].values()) == 5
    # A second pass (another worker, a restart) finds nothing left and writes nothing twice.
    assert runtime(app).writer.replay() == (0, 0)
    assert db[USAGE].count_documents({}) == 5


def test_the_writer_thread_writes_soon_after_the_answer(make_app):
    app = make_app(LEDGER_WRITES="async", LEDGER_WRITE_INTERVAL_MS=20)
    create_user(app, "dev@example.com")
    client = app.test_client()
    assert client.post("/api/test-generation", json={"prompt": "x", "count": 1},
                       headers=bearer(client, "dev@example.com")).status_code == 200
    deadline = time.monotonic() + 5
    while get_db(app)[USAGE].count_documents({}) == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert get_db(app)[USAGE].count_documents({}) == 1


CHILD = textwrap.dedent("""
    import sys
    from backend import create_app
    from backend.auth.services import register_user
    from backend.clock import utc_now
    from backend.db import get_db

    app = create_app({"TESTING": True, "JWT_SECRET_KEY": sys.argv[2], "LLM_PROVIDER": "demo",
                      "LLM_PROVIDERS": ["demo"], "RATELIMIT_ENABLED": False, "BACKGROUND_TASKS": False,
                      "LEDGER_WRITES": "async", "LEDGER_WRITE_INTERVAL_MS": 60000, "SPOOL_PATH": sys.argv[1]})
    with app.app_context():
        register_user(get_db(), "dev@example.com", "correct-horse-battery", now=utc_now())
    client = app.test_client()
    token = client.post("/auth/login", json={"email": "dev@example.com",
                                             "password": "correct-horse-battery"}).json["data"]["accessToken"]
    answered = 0
    while True:
        response = client.post("/api/test-generation", json={"prompt": "x", "count": 1},
                               headers={"Authorization": "Bearer " + token})
        assert response.status_code == 200
        answered += 1
        print(answered, flush=True)
""")


def test_a_process_killed_under_load_loses_no_answered_call(make_app, tmp_path):
    spool_path = str(tmp_path / "shared-spool.jsonl")
    child = subprocess.Popen([sys.executable, "-c", CHILD, spool_path, TEST_SECRET], cwd=ROOT,
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    answered = 0
    try:
        while answered < 40:
            line = child.stdout.readline()
            assert line, "the child stopped answering"
            answered = int(line)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(10)

    # A new process on the same spool replays what the dead one had answered.
    app = make_app(SPOOL_PATH=spool_path)
    written, left = runtime(app).writer.replay()
    assert left == 0
    # Killed between spooling a record and printing its answer, the child may have one more.
    assert answered <= get_db(app)[USAGE].count_documents({}) == written <= answered + 1
    assert Spool(spool_path).count() == 0


def _answered(app, count):
    """The ledger records of `count` answered calls, taken out of the ledger (as if never written)."""
    create_user(app, "dev@example.com")
    client = app.test_client()
    headers = bearer(client, "dev@example.com")
    for _ in range(count):
        assert client.post("/api/test-generation", json={"prompt": "x", "count": 1}, headers=headers).status_code == 200
    db = get_db(app)
    records = list(db[USAGE].find())
    for collection in db.list_collection_names():
        if collection.startswith(USAGE):
            db[collection].delete_many({})
    return records


def test_a_line_torn_by_a_kill_is_set_aside_and_the_rest_replayed(make_app, tmp_path):
    app = make_app()
    good = _answered(app, 1)
    left_by_a_gone_process(runtime(app).spool.path, ("r", good[0]), raw=b'{"k": "r", "d": {"userId": {"$oid": "6740')
    assert runtime(app).writer.replay() == (1, 0)
    assert (tmp_path / "spool.jsonl.torn").read_text().startswith('{"k": "r", "d": {"userId"')


def test_a_record_the_database_refuses_is_set_aside_and_the_others_written(make_app, tmp_path):
    app = make_app()
    good = _answered(app, 2)
    poisoned = {**good[0], "callId": "poisoned", "promptTokens": 10**20}
    del poisoned["_id"]
    left_by_a_gone_process(runtime(app).spool.path, *[("r", record) for record in (poisoned, *good)])

    written, left = runtime(app).writer.replay()

    assert (written, left) == (2, 0)
    assert sorted(r["callId"] for r in get_db(app)[USAGE].find()) == sorted(r["callId"] for r in good)
    assert '"callId": "poisoned"' in (tmp_path / "spool.jsonl.rejected").read_text()


def test_lines_that_are_not_records_never_block_the_spool_or_leave_a_batch_open(make_app, tmp_path):
    app = make_app()
    good = _answered(app, 3)
    db = get_db(app)
    left_by_a_gone_process(runtime(app).spool.path, ("r", good[0]), ("r", {**good[1], "totalTokens": 10**25}),
                           ("r", good[2]), raw=b'{"userEmail": "\xff"}\n1\n{"k": "i"}\n')

    assert runtime(app).writer.replay() == (2, 0)
    assert sorted(r["callId"] for r in db[USAGE].find()) == sorted([good[0]["callId"], good[2]["callId"]])
    month = db[USAGE_USER_MONTHLY].find_one()
    assert sum(day["requests"] for day in month["days"].values()) == 2
    assert rollups.check(db) == [] and db[USAGE_BATCHES].count_documents({}) == 0
    assert len((tmp_path / "spool.jsonl.torn").read_bytes().splitlines()) == 3
    assert len((tmp_path / "spool.jsonl.rejected").read_text().splitlines()) == 1


CLEAN_EXIT = textwrap.dedent("""
    import sys
    from backend import create_app
    from backend.auth.services import register_user
    from backend.clock import utc_now
    from backend.db import get_db

    app = create_app({"TESTING": True, "JWT_SECRET_KEY": sys.argv[2], "LLM_PROVIDER": "demo", "LLM_PROVIDERS": ["demo"],
                      "RATELIMIT_ENABLED": False, "BACKGROUND_TASKS": False, "LEDGER_WRITES": sys.argv[3],
                      "SPOOL_PATH": sys.argv[1]})
    with app.app_context():
        register_user(get_db(), "dev@example.com", "correct-horse-battery", now=utc_now())
    client = app.test_client()
    token = client.post("/auth/login", json={"email": "dev@example.com",
                                             "password": "correct-horse-battery"}).json["data"]["accessToken"]
    for _ in range(3):
        assert client.post("/api/test-generation", json={"prompt": "x", "count": 1},
                           headers={"Authorization": "Bearer " + token}).status_code == 200
""")


def test_a_clean_exit_leaves_no_spool_behind_once_everything_is_written(tmp_path):
    for writes in ("sync", "async"):
        spool_path = str(tmp_path / writes / "spool.jsonl")
        subprocess.run([sys.executable, "-c", CLEAN_EXIT, spool_path, TEST_SECRET, writes], cwd=ROOT, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
        assert [path.name for path in (tmp_path / writes).iterdir() if path.name != "spool.jsonl.lock"] == [], writes
