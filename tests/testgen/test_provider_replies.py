"""Odd replies of Gemini and Anthropic through their real SDKs: usage a reply leaves out is an
estimate, never an exact zero or a placeholder; an error reply of any shape is a 502, not a 500."""
import httpx2
import pytest

from backend.db import USAGE, get_db
from tests.helpers import (
    FakeLLMServer,
    anthropic_message,
    anthropic_stream,
    bearer,
    cases_json,
    create_user,
    gemini_response,
    gemini_stream,
    read_events,
)

TEXT = cases_json(3)


def ledger(app):
    with app.app_context():
        return list(get_db()[USAGE].find())


def generate(app, provider, stream=False):
    client = app.test_client()
    create_user(app, "dev@example.com")
    return client.post("/api/test-generation",
                       json={"prompt": "x", "count": 3, "provider": provider, "stream": stream},
                       headers=bearer(client, "dev@example.com"))


def without_usage(message, *names):
    message["usage"] = {k: v for k, v in message["usage"].items() if k not in names}
    return message


@pytest.mark.parametrize("usage", [
    lambda m: without_usage(m, "input_tokens", "output_tokens", "cache_read_input_tokens",
                            "cache_creation_input_tokens"),
    lambda m: without_usage(m, "input_tokens"),
    lambda m: without_usage(m, "output_tokens"),
    lambda m: {**m, "usage": "lots"},
])
def test_anthropic_usage_left_out_is_an_estimate_not_a_zero(multi_app, fakes, usage):
    fakes["anthropic"].reply(usage(anthropic_message(TEXT, 1000, 300)))
    assert generate(multi_app, "anthropic").status_code == 200
    [record] = ledger(multi_app)
    assert (record["estimated"], record["usageReported"]) == (True, False)
    assert record["promptTokens"] > 0 and record["completionTokens"] > 0


def test_anthropic_text_that_is_no_string_is_a_502_recorded_with_its_usage(multi_app, fakes):
    message = anthropic_message(TEXT, 1000, 300)
    message["content"] = [{"type": "text", "text": 5}]
    fakes["anthropic"].reply(message)
    assert generate(multi_app, "anthropic").status_code == 502
    assert [(r["promptTokens"], r["completionTokens"], r["outcome"], r["estimated"]) for r in ledger(multi_app)] == [
        (1000, 300, "unreadable", False)]


@pytest.mark.parametrize("final", ["left out", "without its count"])
def test_an_anthropic_stream_without_its_final_usage_is_an_estimate_not_the_placeholder(multi_app, fakes, final):
    # message_start says output 1 (a placeholder); the message_delta with the real count never comes.
    events = anthropic_stream(TEXT, 1000, 300, pieces=3)
    if final == "left out":
        events.parts = [part for part in events.parts if not part.startswith("event: message_delta")]
    else:
        events.parts = [part.replace('"usage": {"output_tokens": 300}', '"usage": {}') for part in events.parts]
        assert any('"usage": {}' in part for part in events.parts)
    fakes["anthropic"].reply(events)
    response = generate(multi_app, "anthropic", stream=True)
    assert [name for name, _ in read_events(response)][-1] == "done"
    [record] = ledger(multi_app)
    assert (record["promptTokens"], record["estimated"], record["usageReported"]) == (1000, True, False)
    assert record["completionTokens"] > 1  # counted from the streamed text


def test_a_gemini_stream_whose_last_chunk_has_no_usage_is_an_estimate(multi_app, fakes):
    events = gemini_stream(TEXT, 1000, 300, pieces=3)
    last = events.parts[-1]
    events.parts[-1] = last.replace(last[last.index(', "usageMetadata"'):last.index(', "modelVersion"')], "")
    assert "usageMetadata" not in events.parts[-1]
    fakes["gemini"].reply(events)
    response = generate(multi_app, "gemini", stream=True)
    assert [name for name, _ in read_events(response)][-1] == "done"
    [record] = ledger(multi_app)
    # The earlier chunks said 1000 in and 2 out so far: the input stands, the output is counted.
    assert (record["promptTokens"], record["estimated"], record["usageReported"]) == (1000, True, False)
    assert record["completionTokens"] > 2


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("message", [123, {"text": "no"}, ["a"], None])
def test_a_gemini_error_of_any_shape_is_a_502_and_nothing_is_billed(multi_app, fakes, stream, message):
    fakes["gemini"].reply(httpx2.Response(400, json={"error": {"code": 400, "message": message,
                                                               "status": "INVALID_ARGUMENT"}}))
    response = generate(multi_app, "gemini", stream=stream)
    assert response.status_code == 502 and response.json["message"].startswith("Gemini returned HTTP 400")
    assert ledger(multi_app) == []


def test_a_gemini_stream_refused_before_its_first_chunk_is_retried(make_app):
    fake = FakeLLMServer()
    fake.reply(httpx2.Response(503, json={"error": {"code": 503, "message": "overloaded", "status": "UNAVAILABLE"}}))
    fake.reply(gemini_stream(TEXT, 1000, 300))
    app = make_app(LLM_PROVIDER="gemini", GEMINI_API_KEY="g-test", LLM_MAX_RETRIES=1,
                   LLM_TRANSPORTS={"gemini": fake.transport})
    response = generate(app, "gemini", stream=True)
    assert [name for name, _ in read_events(response)][-1] == "done" and len(fake.requests) == 2
    assert [(r["promptTokens"], r["completionTokens"], r["estimated"]) for r in ledger(app)] == [(1000, 300, False)]


def test_a_gemini_plain_reply_stays_exact(multi_app, fakes):
    fakes["gemini"].reply(gemini_response(TEXT, 1000, 300))
    assert generate(multi_app, "gemini").status_code == 200
    assert [(r["promptTokens"], r["completionTokens"], r["estimated"]) for r in ledger(multi_app)] == [
        (1000, 300, False)]
