"""Providers that misbehave after they answered: every call that may have run is recorded once, as an
estimate with its outcome; calls that cannot have run are retried or refused without a record."""
import httpx2
import pytest

from backend.db import USAGE, get_db
from tests.helpers import bearer, cases_json, chat_completion, create_user, openai_stream

TEXT = cases_json(1)


def build(make_app, handler, retries=2):
    app = make_app(LLM_PROVIDER="openai", OPENAI_API_KEY="sk-test", LLM_MAX_RETRIES=retries,
                   LLM_TRANSPORTS={"openai": httpx2.MockTransport(handler)})
    create_user(app, "dev@example.com")
    client = app.test_client()
    return app, client, bearer(client, "dev@example.com")


def ledger(app):
    return list(get_db(app)[USAGE].find())


def generate(client, headers, **body):
    return client.post("/api/test-generation", json={"prompt": "x", "count": 1, **body}, headers=headers)


@pytest.mark.parametrize("reply", [
    httpx2.Response(200, headers={"content-type": "text/plain"}, content=b"hello, this is not json"),
    httpx2.Response(200, headers={"content-type": "application/json"}, content=b"{not json"),
])
def test_a_reply_the_sdk_cannot_read_is_a_502_recorded_as_unreadable(make_app, reply):
    requests = []

    def handler(request):
        requests.append(request)
        return reply

    app, client, headers = build(make_app, handler)
    response = generate(client, headers)
    assert response.status_code == 502 and len(requests) == 1
    [record] = ledger(app)
    assert (record["outcome"], record["httpStatus"], record["estimated"]) == ("unreadable", 502, True)


@pytest.mark.parametrize("usage, expected", [
    ({"prompt_tokens": 1000, "completion_tokens": 300, "prompt_tokens_details": {"cached_tokens": 1005}},
     (1000, 300, 1000, False, False)),
    ({"prompt_tokens": -5, "completion_tokens": 300}, None),
    ({"prompt_tokens": 1000.7, "completion_tokens": 300}, None),
    ({"prompt_tokens": 10**20, "completion_tokens": 300}, None),
])
def test_impossible_usage_counts_never_break_the_request_or_reach_the_ledger(make_app, usage, expected):
    body = chat_completion(TEXT, 1, 1)
    body["usage"] = {**usage, "total_tokens": 0}
    app, client, headers = build(make_app, lambda request: httpx2.Response(200, json=body))
    assert generate(client, headers).status_code == 200
    [record] = ledger(app)
    if expected is None:
        # Treated as no usage: estimated like a reservation, never the impossible number.
        assert record["estimated"] is True and record["promptTokens"] < 10**6 and record["completionTokens"] > 0
    else:
        assert (record["promptTokens"], record["completionTokens"], record["cachedInputTokens"],
                record["usageReported"], record["estimated"]) == expected


def test_a_timeout_is_never_retried_so_one_request_is_at_most_one_billed_call(make_app):
    requests = []

    def handler(request):
        requests.append(request)
        raise httpx2.ReadTimeout("timed out")

    app, client, headers = build(make_app, handler, retries=2)
    assert generate(client, headers).status_code == 504
    assert len(requests) == 1
    assert [r["outcome"] for r in ledger(app)] == ["timeout"]


def test_a_body_broken_after_the_answer_started_is_not_retried_and_is_recorded(make_app):
    requests = []

    def handler(request):
        requests.append(request)
        raise httpx2.RemoteProtocolError("peer closed connection without sending complete message body")

    app, client, headers = build(make_app, handler, retries=2)
    assert generate(client, headers).status_code == 503
    assert len(requests) == 1
    assert [(r["outcome"], r["estimated"]) for r in ledger(app)] == [("provider_error", True)]


def test_failures_that_cannot_have_billed_are_retried_and_only_the_answer_recorded(make_app, monkeypatch):
    monkeypatch.setattr("backend.testgen.transaction.RETRY_BACKOFF_SECONDS", (0,))
    replies = [httpx2.ConnectError("connection refused"),
               httpx2.Response(429, json={"error": {"message": "slow down"}}),
               httpx2.Response(200, json=chat_completion(TEXT, 120, 30))]

    def handler(request):
        reply = replies.pop(0)
        if isinstance(reply, Exception):
            raise reply
        return reply

    app, client, headers = build(make_app, handler, retries=2)
    assert generate(client, headers).status_code == 200
    assert replies == []
    assert [(r["promptTokens"], r["outcome"]) for r in ledger(app)] == [(120, "ok")]


def test_a_reply_with_usage_but_no_choices_is_recorded_exactly(make_app):
    body = chat_completion(TEXT, 1000, 300)
    body["choices"] = []
    app, client, headers = build(make_app, lambda request: httpx2.Response(200, json=body))
    assert generate(client, headers).status_code == 502
    assert [(r["promptTokens"], r["completionTokens"], r["outcome"], r["estimated"]) for r in ledger(app)] == [
        (1000, 300, "unreadable", False)]


def test_a_stream_that_breaks_after_its_first_chunk_but_before_text_is_recorded(make_app):
    broken = openai_stream(TEXT, 900, 300, break_after=1, break_with=httpx2.ReadError("connection reset"))
    app, client, headers = build(make_app, lambda request: httpx2.Response(
        200, headers={"content-type": "text/event-stream"}, content=broken.chunks()), retries=0)
    response = generate(client, headers, stream=True)
    assert response.status_code == 503 and response.json["success"] is False
    [record] = ledger(app)
    assert (record["outcome"], record["httpStatus"], record["estimated"]) == ("provider_error", 503, True)
