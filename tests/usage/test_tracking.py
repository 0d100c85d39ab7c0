"""One TrackedCall per provider call, closed exactly once whichever trigger comes first.

Each test runs the asynchronous writer with a long interval, so every close lands as one line in
the spool (the write-ahead log) before anything reaches the ledger: a second close would be a
second line there, even though the ledger's unique callId would hide it. Then the spool is
replayed and the ledger, rollups and budget counters are checked against each other.
"""
import httpx2
import pytest
from pymongo.errors import AutoReconnect

from backend.db import BUDGET_COUNTERS, USAGE, get_db
from backend.runtime import runtime
from backend.testgen.web import wait_for_drains
from backend.usage import rollups
from tests.helpers import bearer, cases_json, chat_completion, create_user, openai_stream, read_events

TEXT = cases_json(2)
BUDGET = {"tokensPerDay": 1_000_000}


@pytest.fixture
def tracked_app(make_app, fake_openai):
    app = make_app(LLM_PROVIDER="openai", OPENAI_API_KEY="sk-test", LLM_MAX_RETRIES=0,
                   LLM_TRANSPORTS={"openai": fake_openai.transport},
                   LEDGER_WRITES="async", LEDGER_WRITE_INTERVAL_MS=600_000)
    create_user(app, "admin@example.com", role="admin")
    user = create_user(app, "dev@example.com")
    client = app.test_client()
    # A budget makes every call reserve, so a double settlement or a lost release would show.
    assert client.put(f"/admin/openai/budgets/{user['_id']}", json=BUDGET,
                      headers=bearer(client, "admin@example.com")).status_code == 200
    app.headers = bearer(client, "dev@example.com")
    app.user = user
    return app


def spooled(app):
    """The spooled records, once every thread that could still close a call has ended."""
    wait_for_drains(app)
    state = runtime(app)
    return state.spool.contents().records


def settle(app):
    """Replay the spool; then the ledger, its rollups and the user's day counter must agree."""
    written, left = runtime(app).writer.replay()
    assert left == 0
    with app.app_context():
        db = get_db()
        records = list(db[USAGE].find())
        assert rollups.check(db) == []
        counter = db[BUDGET_COUNTERS].find_one({"owner": str(app.user["_id"]), "window": "day"})
    assert written == len(records)
    assert counter["tokens"] == sum(record["totalTokens"] for record in records)
    return records


def generate(app, path="/api/test-generation", **body):
    return app.test_client().post(path, json={"prompt": "x", "count": 2, **body}, headers=app.headers,
                                  buffered=not body.get("stream"))


def test_a_plain_answer_is_closed_by_the_after_request_hook_once(tracked_app, fake_openai):
    fake_openai.reply(chat_completion(TEXT, 400, 100))
    response = generate(tracked_app)
    assert response.status_code == 200
    [line] = spooled(tracked_app)
    assert (line["outcome"], line["httpStatus"], line["totalTokens"]) == ("ok", 200, 500)
    [record] = settle(tracked_app)
    assert record["callId"] == response.json["data"]["usage"]["callIds"][0]


def test_a_stream_is_closed_by_its_end_once(tracked_app, fake_openai):
    fake_openai.reply(openai_stream(TEXT, 400, 100, pieces=3))
    response = generate(tracked_app, stream=True)
    assert [name for name, _ in read_events(response)][-1] == "done"
    response.close()
    [line] = spooled(tracked_app)
    assert (line["outcome"], line["httpStatus"], line["totalTokens"]) == ("ok", 200, 500)
    settle(tracked_app)


def test_a_stream_the_client_leaves_is_closed_by_its_drain_once(tracked_app, fake_openai):
    fake_openai.reply(openai_stream(TEXT, 400, 100, pieces=4))
    response = generate(tracked_app, stream=True)
    assert next(iter(response.response)).startswith(b"event: delta")
    response.close()
    [line] = spooled(tracked_app)
    assert (line["outcome"], line["totalTokens"], line["usageReported"]) == ("client_gone", 500, True)
    settle(tracked_app)


def test_a_stream_whose_response_is_closed_before_its_first_byte_is_drained_once(tracked_app, fake_openai):
    fake_openai.reply(openai_stream(TEXT, 400, 100, pieces=4))
    response = generate(tracked_app, stream=True)
    response.close()  # the server never sent a byte: the response's own close drains it
    [line] = spooled(tracked_app)
    assert (line["outcome"], line["totalTokens"]) == ("client_gone", 500)
    settle(tracked_app)


def test_a_reply_that_cannot_be_read_after_the_call_is_recorded_once(tracked_app, fake_openai):
    fake_openai.reply(chat_completion("this is no JSON", 400, 100))
    response = generate(tracked_app)
    assert response.status_code == 502
    [line] = spooled(tracked_app)
    assert (line["outcome"], line["httpStatus"], line["totalTokens"]) == ("unreadable", 502, 500)
    settle(tracked_app)


def test_a_provider_timeout_is_recorded_once_as_an_estimate(tracked_app, fake_openai):
    fake_openai.reply(httpx2.ReadTimeout("read timed out"))
    response = generate(tracked_app)
    assert response.status_code == 504
    [line] = spooled(tracked_app)
    assert (line["outcome"], line["httpStatus"], line["estimated"]) == ("timeout", 504, True)
    settle(tracked_app)


def test_a_provider_refusal_records_nothing_and_releases_the_reservation(tracked_app, fake_openai):
    fake_openai.reply(httpx2.Response(500, json={"error": {"message": "boom", "type": "server_error"}}))
    assert generate(tracked_app).status_code == 502
    assert spooled(tracked_app) == []
    assert settle(tracked_app) == []


def test_a_save_that_fails_after_the_call_is_recorded_once(tracked_app, fake_openai, monkeypatch):
    fake_openai.reply(chat_completion(TEXT, 400, 100))

    def database_down(*args, **kwargs):
        raise AutoReconnect("connection reset")

    monkeypatch.setattr("backend.testcases.repository.insert_cases", database_down)
    response = generate(tracked_app, "/api/testcases/generate-and-save-with-ai")
    assert response.status_code == 503
    [line] = spooled(tracked_app)
    assert (line["outcome"], line["httpStatus"], line["totalTokens"]) == ("failed_after_call", 503, 500)
    monkeypatch.undo()
    settle(tracked_app)
