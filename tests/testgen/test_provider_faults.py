"""Providers that misbehave after they answered: every call that may have run is recorded once, as an
estimate with its outcome; calls that cannot have run are retried or refused without a record."""
import httpx2
import pytest

from backend.db import USAGE, get_db
from tests.helpers import bearer, cases_json, chat_completion, create_user, openai_stream, sse

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
    monkeypatch.setattr("backend.llm.retries.RETRY_BACKOFF_SECONDS", (0,))
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


# gpt-4o-mini: $0.15 per million input tokens, $0.60 per million output tokens (OpenAI's price list).
COST_1000_300 = 1000 * 0.15 / 1e6 + 300 * 0.60 / 1e6


@pytest.mark.parametrize("model", [123, {"name": "gpt-4o-mini"}, None, ["gpt-4o-mini"]])
def test_a_reply_whose_model_is_no_name_is_recorded_under_the_model_asked_for(make_app, model):
    # The SDK passes the server's JSON through unchecked, so this reaches pricing as it came.
    body = chat_completion(TEXT, 1000, 300)
    body["model"] = model
    app, client, headers = build(make_app, lambda request: httpx2.Response(200, json=body))
    assert generate(client, headers).status_code == 200
    [record] = ledger(app)
    assert (record["modelName"], record["responseModel"], record["promptTokens"], record["completionTokens"],
            record["estimated"], record["outcome"]) == ("gpt-4o-mini", "gpt-4o-mini", 1000, 300, False, "ok")
    assert record["cost"] == pytest.approx(COST_1000_300, abs=1e-12)


@pytest.mark.parametrize("content", [123, ["a"], {"testCases": []}, True])
def test_a_reply_whose_content_is_no_text_is_a_502_recorded_with_its_usage(make_app, content):
    body = chat_completion(TEXT, 1000, 300)
    body["choices"][0]["message"]["content"] = content
    app, client, headers = build(make_app, lambda request: httpx2.Response(200, json=body))
    response = generate(client, headers)
    assert response.status_code == 502 and response.json["success"] is False
    assert [(r["promptTokens"], r["completionTokens"], r["outcome"], r["httpStatus"], r["estimated"])
            for r in ledger(app)] == [(1000, 300, "unreadable", 502, False)]


def test_a_stream_with_deltas_that_are_no_text_is_read_without_them_and_recorded(make_app):
    base = {"id": "chatcmpl-AbC123", "object": "chat.completion.chunk", "created": 1732200000,
            "model": 42, "system_fingerprint": "fp_0ba0d124f1", "usage": None}
    events = [(None, {**base, "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": None}]})
              for content in (7, ["x"], TEXT, {"y": 1})]
    events += [(None, {**base, "choices": [], "usage": chat_completion("", 1000, 300)["usage"]}), (None, "[DONE]")]
    app, client, headers = build(make_app, lambda request: httpx2.Response(
        200, headers={"content-type": "text/event-stream"}, content=sse(events).chunks()))
    response = generate(client, headers, stream=True)
    assert response.status_code == 200
    assert "event: done" in response.get_data(as_text=True)
    assert '"text":""' not in response.get_data(as_text=True)  # nothing is sent for what is not text
    assert [(r["promptTokens"], r["completionTokens"], r["outcome"], r["responseModel"], r["estimated"])
            for r in ledger(app)] == [(1000, 300, "ok", "gpt-4o-mini", False)]


def test_an_answer_that_cannot_be_priced_or_read_is_still_recorded_once_as_an_estimate(make_app, monkeypatch):
    # Fault injection: the first pricing of the answer fails however it fails; the call ran all the same.
    from backend.llm import calls
    real, failures = calls.price_call, []

    def fails_once(*args, **kwargs):
        if not failures:
            failures.append(1)
            raise RuntimeError("injected")
        return real(*args, **kwargs)

    monkeypatch.setattr(calls, "price_call", fails_once)
    body = chat_completion(TEXT, 1000, 300)
    app, client, headers = build(make_app, lambda request: httpx2.Response(200, json=body))
    response = generate(client, headers)
    assert response.status_code == 502 and failures == [1]
    [record] = ledger(app)
    assert (record["outcome"], record["httpStatus"], record["estimated"], record["usageReported"]) == (
        "unreadable", 502, True, False)
    assert record["promptTokens"] > 0 and record["cost"] > 0
