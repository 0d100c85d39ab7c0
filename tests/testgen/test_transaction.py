"""The generation transaction against fake providers: every answered call lands in the ledger once,
and every budget counter equals the ledger for its window after the requests settle."""
import threading
from datetime import datetime, timezone
from decimal import Decimal

import httpx2
import pytest
import tiktoken

from backend.db import TESTCASES, USAGE, get_db
from backend.testgen.web import wait_for_drains
from tests.helpers import (bearer, cases_json, chat_completion, create_user, gemini_response, gemini_stream,
                           ollama_stream, openai_stream)

TEXT = cases_json(3)


def ledger(app, **query):
    with app.app_context():
        return list(get_db()[USAGE].find(query))


def assert_counters_equal_ledger(app, user):
    """The user's day and month counters hold exactly what the ledger holds for those windows."""
    with app.app_context():
        db = get_db()
        records = list(db[USAGE].find({"userId": user["_id"]}))
        assert records, "nothing recorded"
        day, month = records[0]["date"], records[0]["month"]
        for window, period, field in (("day", day, "date"), ("month", month, "month")):
            counter = db["budget_counters"].find_one({"_id": f"{user['_id']}|{window}|{period}"})
            in_window = [r for r in records if r[field] == period]
            assert counter["tokens"] == sum(r["totalTokens"] for r in in_window), window
            assert counter["costUnits"] == sum(int(Decimal(str(r["cost"])) * 10**10) for r in in_window), window


@pytest.fixture
def caller(multi_app):
    user = create_user(multi_app, "dev@example.com")
    create_user(multi_app, "root@example.com", role="admin")
    client = multi_app.test_client()
    return client, user, bearer(client, "dev@example.com"), bearer(client, "root@example.com")


def test_a_tiered_model_generates_and_is_priced_at_its_own_tier(multi_app, fakes, caller):
    client, user, headers, _ = caller
    fakes["gemini"].reply(gemini_response(TEXT, 1_000, 500, model="gemini-2.5-pro"))
    response = client.post("/api/test-generation", json={"prompt": "x", "count": 3, "provider": "gemini",
                                                         "model": "gemini-2.5-pro"}, headers=headers)
    assert response.status_code == 200, response.json
    # $1.25 per million input, $10 per million output below 200k input tokens.
    assert response.json["data"]["usage"]["cost"] == 0.00625
    assert ledger(multi_app)[0]["price"]["inputPer1M"] == 1.25
    assert_counters_equal_ledger(multi_app, user)


def test_a_save_that_fails_after_the_call_is_recorded_as_failed_after_call(multi_app, fakes, caller, monkeypatch):
    client, user, headers, _ = caller
    fakes["openai"].reply(chat_completion(TEXT, 900, 300))

    def database_down(*args, **kwargs):
        from pymongo.errors import AutoReconnect
        raise AutoReconnect("connection refused")

    monkeypatch.setattr("backend.testcases.repository.insert_cases", database_down)
    response = client.post("/api/testcases/generate-and-save-with-ai", json={"prompt": "x", "count": 3},
                           headers=headers)
    assert response.status_code == 503
    [record] = ledger(multi_app)
    assert (record["promptTokens"], record["completionTokens"]) == (900, 300)
    assert (record["outcome"], record["httpStatus"], record["operation"]) == (
        "failed_after_call", 503, "testcase_generation_saved")
    assert_counters_equal_ledger(multi_app, user)


@pytest.mark.parametrize("provider, reply", [
    ("openai", lambda: chat_completion(TEXT, 0, 0, usage=False)),
    ("gemini", lambda: {key: value for key, value in gemini_response(TEXT, 0, 0).items() if key != "usageMetadata"}),
])
def test_a_reply_without_usage_is_recorded_as_an_estimate_and_saved_cases_point_at_it(multi_app, fakes, caller,
                                                                                       provider, reply):
    client, user, headers, _ = caller
    fakes[provider].reply(reply())
    response = client.post("/api/testcases/generate-and-save-with-ai",
                           json={"prompt": "x", "count": 3, "provider": provider}, headers=headers)
    assert response.status_code == 201
    [record] = ledger(multi_app)
    assert (record["estimated"], record["usageReported"], record["outcome"]) == (True, False, "ok")
    assert record["promptTokens"] > 0 and record["completionTokens"] > 0
    for case in response.json["data"]["testCases"]:
        assert case["tokenUsage"]["callIds"] == [record["callId"]]
    assert_counters_equal_ledger(multi_app, user)


def stream_then_leave(client, headers, provider):
    response = client.post("/api/test-generation", buffered=False, headers=headers,
                           json={"prompt": "x", "count": 3, "provider": provider, "stream": True})
    chunks = iter(response.response)
    assert next(chunks).startswith(b"event: delta")
    response.close()


@pytest.mark.parametrize("provider, body, billed", [
    ("openai", lambda: openai_stream(TEXT, 900, 142, pieces=4), 1_042),
    ("gemini", lambda: gemini_stream(TEXT, 700, 342, pieces=4), 1_042),
    ("ollama", lambda: ollama_stream(TEXT, 800, 242, pieces=4), 1_042),
])
def test_aborted_streams_are_billed_in_full_and_the_budget_counts_them(multi_app, fakes, caller, provider, body,
                                                                       billed):
    client, user, headers, admin = caller
    client.put(f"/admin/openai/budgets/{user['_id']}", json={"tokensPerDay": 10_000_000}, headers=admin)
    for _ in range(20):
        fakes[provider].reply(body())
        stream_then_leave(client, headers, provider)
    wait_for_drains(multi_app)
    records = ledger(multi_app)
    assert len(records) == 20 and {r["outcome"] for r in records} == {"client_gone"}
    assert sum(r["totalTokens"] for r in records) == 20 * billed
    assert_counters_equal_ledger(multi_app, user)


def test_a_budget_set_while_requests_are_in_flight_still_counts_them(make_app, caller):
    _, user, _, _ = caller
    gate, entered = threading.Event(), threading.Event()

    def handler(request):
        if not entered.is_set():
            entered.set()
            gate.wait(10)
        return httpx2.Response(200, json=chat_completion(cases_json(1), 1_000, 852))

    app = make_app(LLM_PROVIDER="openai", OPENAI_API_KEY="sk-test", LLM_MAX_RETRIES=0,
                   LLM_TRANSPORTS={"openai": httpx2.MockTransport(handler)})
    user = create_user(app, "dev@example.com")
    create_user(app, "root@example.com", role="admin")
    client = app.test_client()
    headers, admin = bearer(client, "dev@example.com"), bearer(client, "root@example.com")
    in_flight = threading.Thread(target=lambda: app.test_client().post(
        "/api/test-generation", json={"prompt": "x", "count": 1}, headers=headers))
    in_flight.start()
    assert entered.wait(10)
    assert client.put(f"/admin/openai/budgets/{user['_id']}", json={"tokensPerDay": 100_000},
                      headers=admin).status_code == 200
    gate.set()
    in_flight.join(10)
    assert client.post("/api/test-generation", json={"prompt": "x", "count": 1}, headers=headers).status_code == 200
    assert sum(r["totalTokens"] for r in ledger(app)) == 2 * 1_852
    assert_counters_equal_ledger(app, user)


def test_a_usd_budget_refuses_a_model_without_a_price(multi_app, fakes, caller):
    client, user, headers, admin = caller
    multi_app.config["LLM_ALLOWED_MODELS"] = {**multi_app.config["LLM_ALLOWED_MODELS"], "openai": "*"}
    client.put(f"/admin/openai/budgets/{user['_id']}", json={"usdPerDay": 5}, headers=admin)
    response = client.post("/api/test-generation", json={"prompt": "x", "model": "my-finetune"}, headers=headers)
    assert response.status_code == 422
    assert "my-finetune" in response.json["message"] and "PRICING_FILE" in response.json["message"]
    assert fakes["openai"].requests == [] and ledger(multi_app) == []


def test_cases_saved_from_one_call_carry_shares_that_sum_to_the_call(multi_app, fakes, caller):
    client, _, headers, _ = caller
    fakes["openai"].reply(chat_completion(TEXT, 1_001, 397, cached=256))
    response = client.post("/api/testcases/generate-and-save-with-ai", json={"prompt": "x", "count": 3},
                           headers=headers)
    shares = [case["tokenUsage"] for case in response.json["data"]["testCases"]]
    [record] = ledger(multi_app)
    assert [s["inputTokens"] for s in shares] == [334, 334, 333]
    assert [s["outputTokens"] for s in shares] == [133, 132, 132]
    assert [s["cachedInputTokens"] for s in shares] == [86, 85, 85]
    assert [s["totalTokens"] for s in shares] == [467, 466, 465]
    # 745 uncached x $0.15 + 256 cached x $0.075 + 397 output x $0.60 per million = $0.00036915.
    assert record["cost"] == 0.00036915
    assert sum(Decimal(str(s["estimatedCost"])) for s in shares) == Decimal("0.00036915")
    assert [s["share"] for s in shares] == [{"index": 1, "of": 3}, {"index": 2, "of": 3}, {"index": 3, "of": 3}]
    assert all(s["generation"] == {"inputTokens": 1_001, "outputTokens": 397, "totalTokens": 1_398,
                                   "estimatedCost": 0.00036915} for s in shares)
    with multi_app.app_context():
        assert get_db()[TESTCASES].count_documents({}) == 3


@pytest.mark.parametrize("text", ["登录页面的密码重置功能需要发送电子邮件验证码", "🔐🔑✉️ reset 👩‍💻" * 20,
                                  "def reset(user):\n    token = secrets.token_urlsafe(32)\n    send(user.email)\n"])
def test_reservations_for_other_providers_never_fall_short_of_a_byte_level_tokenizer(multi_app, text):
    from backend.llm.registry import get_provider
    messages = [{"role": "system", "content": "s"}, {"role": "user", "content": text}]
    with multi_app.app_context():
        for name in ("gemini", "anthropic", "ollama"):
            counted = get_provider(name).count_input_tokens(messages, "any")
            for encoding in ("o200k_base", "cl100k_base"):
                tokens = sum(len(tiktoken.get_encoding(encoding).encode(m["content"])) for m in messages)
                assert counted >= tokens, (name, encoding)


def test_a_timed_out_call_is_recorded_as_an_estimate(make_app):
    def handler(request):
        raise httpx2.ReadTimeout("timed out")

    app = make_app(LLM_PROVIDER="openai", OPENAI_API_KEY="sk-test", LLM_MAX_RETRIES=0,
                   LLM_TRANSPORTS={"openai": httpx2.MockTransport(handler)})
    user = create_user(app, "dev@example.com")
    client = app.test_client()
    response = client.post("/api/test-generation", json={"prompt": "x", "count": 1},
                           headers=bearer(client, "dev@example.com"))
    assert response.status_code == 504
    [record] = ledger(app)
    assert (record["outcome"], record["httpStatus"], record["estimated"], record["completionTokens"]) == (
        "timeout", 504, True, 0)
    assert_counters_equal_ledger(app, user)


def test_settled_records_and_counters_share_the_call_time(make_app):
    fixed = datetime(2026, 11, 30, 23, 59, 59, tzinfo=timezone.utc)
    app = make_app(CLOCK=lambda: fixed)
    user = create_user(app, "dev@example.com")
    client = app.test_client()
    client.post("/api/test-generation", json={"prompt": "x", "count": 1}, headers=bearer(client, "dev@example.com"))
    [record] = ledger(app)
    assert (record["date"], record["month"]) == ("2026-11-30", "2026-11")
    assert_counters_equal_ledger(app, user)


def test_a_model_the_server_does_not_allow_is_refused_before_any_call(multi_app, fakes, caller):
    client, _, headers, _ = caller
    for body in ({"prompt": "x", "model": "gpt-4o-mini-but-pricier"}, {"prompt": "x", "model": "llama3.2-70b",
                                                                       "provider": "ollama"}):
        for path in ("/api/test-generation", "/api/estimate-tokens", "/api/testcases/generate-and-save-with-ai"):
            response = client.post(path, json=body, headers=headers)
            assert response.status_code == 422 and response.json["errors"]["model"], (path, body)
    forged = client.post("/api/test-generation", json={"prompt": "x", "model": "gpt-4o\nINFO forged"},
                         headers=headers)
    assert forged.status_code == 422 and forged.json["errors"]["model"] == ["Not a valid model name."]
    assert all(fake.requests == [] for fake in fakes.values()) and ledger(multi_app) == []
