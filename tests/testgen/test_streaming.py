"""Streams: usage recorded exactly once when the stream ends, however it ends."""
import logging

import httpx2

from backend.db import USAGE, get_db
from tests.helpers import anthropic_stream, bearer, cases_json, create_user, openai_stream, read_events

TEXT = cases_json(3)


def ledger(app):
    with app.app_context():
        return list(get_db()[USAGE].find())


def post_stream(app, provider, **body):
    client = app.test_client()
    create_user(app, "dev@example.com")
    return client.post("/api/test-generation", buffered=False,
                       json={"prompt": "x", "count": 3, "provider": provider, "stream": True, **body},
                       headers=bearer(client, "dev@example.com"))


def test_a_completed_stream_sends_deltas_then_done_and_records_once(multi_app, fakes):
    fakes["openai"].reply(openai_stream(TEXT, 900, 300, cached=512, pieces=4))
    response = post_stream(multi_app, "openai")
    assert response.mimetype == "text/event-stream"
    events = read_events(response)
    assert [name for name, _ in events] == ["delta"] * 4 + ["done"]
    done = events[-1][1]
    assert done["success"] is True and done["message"] == "Generated 3 test cases"
    assert [c["title"] for c in done["data"]["testCases"]] == ["Case 1", "Case 2", "Case 3"]
    records = ledger(multi_app)
    assert len(records) == 1
    assert (records[0]["promptTokens"], records[0]["completionTokens"]) == (900, 300)
    assert done["data"]["usage"]["callIds"] == [records[0]["callId"]]
    assert fakes["openai"].requests[0]["json"]["stream_options"] == {"include_usage": True}


def test_abandoned_before_usage_was_reported_records_nothing(multi_app, fakes, caplog):
    fakes["openai"].reply(openai_stream(TEXT, 900, 300, pieces=4))
    response = post_stream(multi_app, "openai")
    chunks = iter(response.response)
    assert next(chunks).startswith(b"event: delta")
    with caplog.at_level(logging.WARNING):
        response.close()
    assert ledger(multi_app) == []
    assert "Usage not recorded: openai returned no usage" in caplog.text


def test_abandoned_after_usage_was_reported_records_what_was_reported(multi_app, fakes):
    # Anthropic reports input usage in message_start, before any text.
    fakes["anthropic"].reply(anthropic_stream(TEXT, 300, 450, cache_read=2048, pieces=4))
    response = post_stream(multi_app, "anthropic")
    chunks = iter(response.response)
    next(chunks)
    response.close()
    records = ledger(multi_app)
    assert len(records) == 1
    assert (records[0]["promptTokens"], records[0]["cachedInputTokens"], records[0]["completionTokens"]) == (2348, 2048, 1)


def test_a_stream_the_provider_breaks_ends_with_an_error_event_and_records_what_was_reported(multi_app, fakes):
    fakes["anthropic"].reply(anthropic_stream(TEXT, 300, 450, pieces=4, break_after=5,
                                              break_with=httpx2.ReadError("connection reset")))
    events = read_events(post_stream(multi_app, "anthropic"))
    assert [name for name, _ in events] == ["delta", "delta", "error"]
    assert events[-1][1] == {"success": False, "status": 503,
                             "message": "Could not connect to the Anthropic API, or the connection broke"}
    records = ledger(multi_app)
    assert len(records) == 1
    assert (records[0]["promptTokens"], records[0]["completionTokens"]) == (300, 1)


def test_a_broken_stream_without_usage_records_nothing(multi_app, fakes):
    fakes["openai"].reply(openai_stream(TEXT, 900, 300, pieces=4, break_after=3,
                                        break_with=httpx2.RemoteProtocolError("peer closed connection")))
    events = read_events(post_stream(multi_app, "openai"))
    assert events[-1][0] == "error" and events[-1][1]["status"] == 503
    assert ledger(multi_app) == []


def test_a_stream_whose_text_is_not_test_cases_errors_but_records_the_spend(multi_app, fakes):
    fakes["openai"].reply(openai_stream("I cannot help with that.", 40, 8))
    events = read_events(post_stream(multi_app, "openai"))
    assert events[-1][0] == "error" and events[-1][1]["status"] == 502
    assert [r["promptTokens"] for r in ledger(multi_app)] == [40]


def test_a_provider_that_fails_before_streaming_answers_with_a_json_error(multi_app, fakes):
    fakes["openai"].reply(httpx2.Response(429, json={"error": {"message": "slow down"}}))
    response = post_stream(multi_app, "openai")
    assert response.status_code == 503
    assert response.json["success"] is False
    assert ledger(multi_app) == []


def test_the_demo_provider_streams_too(client, user_headers, db):
    response = client.post("/api/test-generation", json={"prompt": "x", "count": 2, "stream": True},
                           headers=user_headers)
    events = read_events(response)
    assert events[-1][0] == "done" and len(events[-1][1]["data"]["testCases"]) == 2
    assert db[USAGE].count_documents({}) == 1
