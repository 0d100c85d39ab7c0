"""Streams: usage recorded exactly once when the stream ends, however it ends."""
import httpx
import httpx2
import pytest
import tiktoken

from backend.db import USAGE, get_db
from backend.testgen.web import wait_for_drains
from tests.budgets.support import prompt_tokens
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


def abandon_after_first_delta(app, provider):
    response = post_stream(app, provider)
    chunks = iter(response.response)
    assert next(chunks).startswith(b"event: delta")
    response.close()
    wait_for_drains(app)


def test_a_stream_the_client_abandons_is_read_to_its_end_and_recorded_exactly(multi_app, fakes):
    fakes["openai"].reply(openai_stream(TEXT, 900, 300, pieces=4))
    abandon_after_first_delta(multi_app, "openai")
    [record] = ledger(multi_app)
    assert (record["promptTokens"], record["completionTokens"], record["outcome"]) == (900, 300, "client_gone")
    assert (record["usageReported"], record["estimated"], record["httpStatus"]) == (True, False, 200)


def test_an_abandoned_anthropic_stream_records_the_final_output_not_the_placeholder(multi_app, fakes):
    # message_start reports input and an output of 1; message_delta at the end has the real output.
    fakes["anthropic"].reply(anthropic_stream(TEXT, 300, 450, cache_read=2048, pieces=4))
    abandon_after_first_delta(multi_app, "anthropic")
    [record] = ledger(multi_app)
    assert (record["promptTokens"], record["cachedInputTokens"], record["completionTokens"]) == (2348, 2048, 450)
    assert record["outcome"] == "client_gone" and record["estimated"] is False


def test_a_stream_the_provider_breaks_ends_with_an_error_event_and_records_an_estimate(multi_app, fakes):
    fakes["anthropic"].reply(anthropic_stream(TEXT, 300, 450, pieces=4, break_after=5,
                                              break_with=httpx2.ReadError("connection reset")))
    events = read_events(post_stream(multi_app, "anthropic"))
    assert [name for name, _ in events] == ["delta", "delta", "error"]
    assert events[-1][1] == {"success": False, "status": 503,
                             "message": "Could not connect to the Anthropic API, or the connection broke"}
    received = "".join(data["text"] for name, data in events if name == "delta")
    [record] = ledger(multi_app)
    # Input as message_start reported it; output at most one token per UTF-8 byte received.
    assert (record["promptTokens"], record["completionTokens"]) == (300, len(received.encode()))
    assert (record["outcome"], record["estimated"], record["usageReported"]) == ("provider_error", True, False)


def test_a_broken_stream_without_usage_records_an_estimate_counted_like_the_reservation(multi_app, fakes):
    fakes["openai"].reply(openai_stream(TEXT, 900, 300, pieces=4, break_after=3,
                                        break_with=httpx2.RemoteProtocolError("peer closed connection")))
    events = read_events(post_stream(multi_app, "openai"))
    assert events[-1][0] == "error" and events[-1][1]["status"] == 503
    received = "".join(data["text"] for name, data in events if name == "delta")
    [record] = ledger(multi_app)
    encoding = tiktoken.get_encoding("o200k_base")
    assert record["promptTokens"] == prompt_tokens("x", 3)
    assert record["completionTokens"] == len(encoding.encode(received))
    assert (record["outcome"], record["estimated"]) == ("provider_error", True)


@pytest.mark.parametrize("provider, failure", [
    ("gemini", lambda: httpx2.Response(500, json={"error": {"code": 500, "message": "internal", "status": "INTERNAL"}})),
    ("ollama", lambda: httpx.Response(500, json={"error": "model 'llama3.2' not found"})),
    ("openai", lambda: httpx2.Response(400, json={"error": {"message": "bad request"}})),
    ("anthropic", lambda: httpx2.Response(400, json={"type": "error", "error": {"type": "invalid_request_error",
                                                                                 "message": "bad"}})),
])
def test_a_provider_that_fails_before_the_first_token_answers_json_for_every_provider(multi_app, fakes, provider,
                                                                                      failure):
    fakes[provider].reply(failure())
    response = post_stream(multi_app, provider)
    assert response.mimetype == "application/json"
    assert response.status_code == 502 and response.json["success"] is False
    assert ledger(multi_app) == []


def test_a_stream_whose_text_is_not_test_cases_errors_but_records_the_spend(multi_app, fakes):
    fakes["openai"].reply(openai_stream("I cannot help with that.", 40, 8))
    events = read_events(post_stream(multi_app, "openai"))
    assert events[-1][0] == "error" and events[-1][1]["status"] == 502
    assert [(r["promptTokens"], r["outcome"]) for r in ledger(multi_app)] == [(40, "unreadable")]


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
