"""A call in flight when its process dies is still in the ledger: its intent, spooled before the
provider call, becomes a record estimated at the budget reservation (outcome `interrupted`), so
the ledger holds every call the provider may have billed and the counters still equal it."""
import signal
import subprocess
import sys
import textwrap
import threading

import httpx2

from backend.db import BUDGET_COUNTERS, USAGE, get_db
from backend.runtime import runtime
from backend.usage import rollups
from tests.helpers import ROOT, TEST_SECRET, bearer, cases_json, chat_completion, create_user

MAX_OUTPUT = 700


def test_a_process_that_dies_during_the_provider_call_leaves_the_call_in_the_ledger_at_its_reservation(
        make_app, tmp_path):
    entered, never = threading.Event(), threading.Event()

    def provider(request):
        entered.set()
        never.wait(10)  # the process "dies" while the provider works
        raise httpx2.ReadTimeout("the test is over", request=request)

    spool_path = str(tmp_path / "spool.jsonl")
    dying = make_app(LLM_PROVIDER="openai", OPENAI_API_KEY="sk-test", LLM_MAX_RETRIES=0, LLM_MAX_OUTPUT_TOKENS=MAX_OUTPUT,
                     LLM_TRANSPORTS={"openai": httpx2.MockTransport(provider)}, SPOOL_PATH=spool_path,
                     LEDGER_WRITES="async", LEDGER_WRITE_INTERVAL_MS=600_000)
    create_user(dying, "root@example.com", role="admin")
    user = create_user(dying, "dev@example.com")
    client = dying.test_client()
    assert client.put(f"/admin/openai/budgets/{user['_id']}", json={"tokensPerDay": 10**6},
                      headers=bearer(client, "root@example.com")).status_code == 200
    headers = {**bearer(client, "dev@example.com"), "X-Request-ID": "req-1"}
    request = threading.Thread(target=client.post, args=("/api/test-generation",),
                               kwargs={"json": {"prompt": "Login", "count": 2}, "headers": headers}, daemon=True)
    request.start()
    assert entered.wait(10)
    try:
        [intent] = runtime(dying).spool.contents().intents.values()  # on disk before the provider was called
        runtime(dying).spool.release()  # the process is killed here

        survivor = make_app(MONGO_CLIENT=get_db(dying).client, SPOOL_PATH=spool_path)
        assert runtime(survivor).writer.replay() == (1, 0)
        with survivor.app_context():
            db = get_db()
            [record] = db[USAGE].find()
            assert rollups.check(db) == []
            counter = db[BUDGET_COUNTERS].find_one({"owner": str(user["_id"]), "window": "day"})
    finally:
        never.set()
        request.join(10)
    assert record["callId"] == intent["callId"] and record["requestId"] == "req-1"
    assert (record["outcome"], record["estimated"], record["usageReported"], record["httpStatus"]) == (
        "interrupted", True, False, None)
    assert record["completionTokens"] == MAX_OUTPUT and record["promptTokens"] > 0
    # gpt-4o-mini: $0.15 per million input tokens, $0.60 per million output tokens.
    assert record["cost"] == round((record["promptTokens"] * 0.15 + MAX_OUTPUT * 0.60) / 1e6, 10)
    assert counter["tokens"] == record["totalTokens"]


CHILD = textwrap.dedent("""
    import sys, time
    import httpx2
    from backend import create_app
    from backend.auth.services import register_user
    from backend.clock import utc_now
    from backend.db import get_db

    def provider(request):
        print("calling", flush=True)
        time.sleep(60)

    app = create_app({"TESTING": True, "JWT_SECRET_KEY": sys.argv[2], "LLM_PROVIDER": "openai", "LLM_PROVIDERS": ["openai"],
                      "OPENAI_API_KEY": "sk-test", "LLM_MAX_RETRIES": 0, "LLM_MAX_OUTPUT_TOKENS": 700,
                      "LLM_TRANSPORTS": {"openai": httpx2.MockTransport(provider)}, "RATELIMIT_ENABLED": False,
                      "BACKGROUND_TASKS": False, "SPOOL_PATH": sys.argv[1]})
    with app.app_context():
        register_user(get_db(), "dev@example.com", "correct-horse-battery", now=utc_now())
    client = app.test_client()
    token = client.post("/auth/login", json={"email": "dev@example.com",
                                             "password": "correct-horse-battery"}).json["data"]["accessToken"]
    client.post("/api/test-generation", json={"prompt": "x", "count": 1}, headers={"Authorization": "Bearer " + token})
""")


def test_kill_9_during_the_provider_call_leaves_an_interrupted_estimate(make_app, tmp_path):
    spool_path = str(tmp_path / "shared-spool.jsonl")
    child = subprocess.Popen([sys.executable, "-c", CHILD, spool_path, TEST_SECRET], cwd=ROOT,
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert child.stdout.readline() == "calling\n"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(10)

    app = make_app(SPOOL_PATH=spool_path)
    assert runtime(app).writer.replay() == (1, 0)
    [record] = get_db(app)[USAGE].find()
    assert (record["userEmail"], record["provider"], record["modelName"], record["outcome"], record["estimated"]) == (
        "dev@example.com", "openai", "gpt-4o-mini", "interrupted", True)
    assert record["completionTokens"] == MAX_OUTPUT
    assert runtime(app).spool.count() == 0 and runtime(app).writer.replay() == (0, 0)


def test_a_refused_call_leaves_no_intent_behind(make_app, fake_openai, tmp_path):
    app = make_app(LLM_PROVIDER="openai", OPENAI_API_KEY="sk-test", LLM_MAX_RETRIES=0,
                   LLM_TRANSPORTS={"openai": fake_openai.transport})
    create_user(app, "dev@example.com")
    client = app.test_client()
    fake_openai.reply(httpx2.Response(429, json={"error": {"message": "slow down", "type": "rate_limit"}}))
    fake_openai.reply(chat_completion(cases_json(1), 100, 50))
    headers = bearer(client, "dev@example.com")
    assert client.post("/api/test-generation", json={"prompt": "x", "count": 1}, headers=headers).status_code == 503
    assert client.post("/api/test-generation", json={"prompt": "x", "count": 1}, headers=headers).status_code == 200
    contents = runtime(app).spool.contents()
    assert len(contents.intents) == 2 and contents.unwritten() == ([], [])
    runtime(app).spool.release()  # even once this process is gone, nothing is left to recover
    other = make_app(MONGO_CLIENT=get_db(app).client)
    assert runtime(other).writer.replay() == (0, 0) and get_db(app)[USAGE].count_documents({}) == 1


def test_a_process_that_dies_between_its_reservation_and_its_call_has_the_reservation_given_back(
        make_app, tmp_path, monkeypatch):
    from backend.usage.spool import Spool

    reserved, dead = threading.Event(), threading.Event()
    intend = Spool.intend

    def dies_here(spool, intent):  # the budget reservation is made; the call's intent is next
        reserved.set()
        dead.wait(10)
        raise SystemExit("killed")

    spool_path = str(tmp_path / "spool.jsonl")
    dying = make_app(SPOOL_PATH=spool_path, LEDGER_WRITES="async", LEDGER_WRITE_INTERVAL_MS=600_000)
    create_user(dying, "root@example.com", role="admin")
    user = create_user(dying, "dev@example.com")
    client = dying.test_client()
    root = bearer(client, "root@example.com")
    assert client.put(f"/admin/openai/budgets/{user['_id']}", json={"tokensPerDay": 10**6, "tokensPerMonth": 10**7},
                      headers=root).status_code == 200
    headers = bearer(client, "dev@example.com")
    monkeypatch.setattr(Spool, "intend", dies_here)
    def post():
        try:
            client.post("/api/test-generation", json={"prompt": "x", "count": 1}, headers=headers)
        except SystemExit:
            pass  # the "killed" request thread ends here

    request = threading.Thread(target=post, daemon=True)
    request.start()
    assert reserved.wait(10)
    db = get_db(dying)
    held = {c["_id"]: c["tokens"] for c in db[BUDGET_COUNTERS].find()}
    assert len(held) == 2 and all(tokens > 0 for tokens in held.values())  # the user's day and month
    runtime(dying).spool.release()  # the process is killed here
    monkeypatch.setattr(Spool, "intend", intend)

    survivor = make_app(MONGO_CLIENT=db.client, SPOOL_PATH=spool_path)
    assert runtime(survivor).writer.replay() == (0, 0)  # nothing was called, nothing recorded
    assert {c["_id"]: c["tokens"] for c in db[BUDGET_COUNTERS].find()} == dict.fromkeys(held, 0)
    assert db[USAGE].count_documents({}) == 0
    # Recovering again (another worker) gives nothing back twice.
    assert runtime(make_app(MONGO_CLIENT=db.client, SPOOL_PATH=spool_path)).writer.replay() == (0, 0)
    assert {c["_id"]: c["tokens"] for c in db[BUDGET_COUNTERS].find()} == dict.fromkeys(held, 0)
    dead.set()
    request.join(10)
