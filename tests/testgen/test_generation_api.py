import httpx2

from backend.db import USAGE, get_db
from backend.llm.tokenizer import count_chat_tokens, count_text_tokens
from backend.testgen.prompts import build_messages
from tests.helpers import bearer, cases_json, chat_completion, create_user


def test_demo_generation_returns_cases_and_real_token_counts(client, user_headers, db):
    response = client.post("/api/test-generation", json={"prompt": "Password reset", "count": 3},
                           headers=user_headers)
    assert response.status_code == 200
    data = response.json["data"]
    assert response.json["message"] == "Generated 3 test cases"
    assert len(data["testCases"]) == 3
    assert set(data["testCases"][0]) == {"title", "description", "preconditions", "steps",
                                         "expectedResult", "priority", "type"}
    expected_input = count_chat_tokens(build_messages("Password reset", 3), "gpt-4o-mini")
    record = db[USAGE].find_one()
    expected_output = count_text_tokens(
        __import__("json").dumps({"testCases": data["testCases"]}, indent=2), "gpt-4o-mini")
    usage = data["usage"]
    assert (usage["promptTokens"], usage["completionTokens"]) == (expected_input, expected_output)
    assert usage["totalTokens"] == expected_input + expected_output
    assert (usage["provider"], usage["modelName"], usage["cost"], usage["priced"]) == ("demo", "demo", 0.0, False)
    assert record["demo"] is True and record["cost"] == 0.0
    assert record["promptTokens"] == expected_input


def test_openai_generation_records_exactly_what_the_server_reported(openai_app, fake_openai):
    client = openai_app.test_client()
    create_user(openai_app, "dev@example.com")
    headers = bearer(client, "dev@example.com")
    fake_openai.reply(chat_completion(cases_json(2), prompt_tokens=1234, completion_tokens=567, cached=1024))
    response = client.post("/api/test-generation",
                           json={"prompt": "Checkout", "count": 2, "fileContent": "def pay(): ..."},
                           headers={**headers, "X-Request-ID": "req-42"})
    assert response.status_code == 200, response.json
    assert response.headers["X-Request-ID"] == "req-42"
    sent = fake_openai.requests[0]["json"]
    assert sent["model"] == "gpt-4o-mini" and "def pay(): ..." in sent["messages"][1]["content"]

    expected_cost = ((1234 - 1024) * 0.15 + 1024 * 0.075 + 567 * 0.60) / 1_000_000
    usage = response.json["data"]["usage"]
    assert usage["cost"] == round(expected_cost, 10) == 0.0004485
    with openai_app.app_context():
        records = list(get_db()[USAGE].find())
    assert len(records) == 1
    record = records[0]
    assert (record["promptTokens"], record["completionTokens"], record["totalTokens"]) == (1234, 567, 1801)
    assert (record["cachedInputTokens"], record["reasoningTokens"]) == (1024, 0)
    assert record["cost"] == 0.0004485
    assert record["price"]["inputPer1M"] == 0.15 and record["price"]["cachedInputPer1M"] == 0.075
    assert record["price"]["outputPer1M"] == 0.6
    assert (record["operation"], record["userEmail"], record["requestId"]) == ("test_generation", "dev@example.com", "req-42")
    assert (record["modelName"], record["responseModel"], record["provider"]) == (
        "gpt-4o-mini", "gpt-4o-mini-2024-07-18", "openai")
    assert record["callId"] == usage["callIds"][0]
    assert record["date"] == record["timestamp"].strftime("%Y-%m-%d")
    assert record["month"] == record["timestamp"].strftime("%Y-%m") and record["year"] == record["timestamp"].year
    assert record["isActive"] is True and record["priced"] is True


def test_a_request_may_choose_the_model(openai_app, fake_openai):
    client = openai_app.test_client()
    create_user(openai_app, "dev@example.com")
    fake_openai.reply(chat_completion(cases_json(1), 10, 10, model="gpt-4.1-nano-2025-04-14"))
    response = client.post("/api/test-generation", json={"prompt": "x", "count": 1, "model": "gpt-4.1-nano"},
                           headers=bearer(client, "dev@example.com"))
    assert response.status_code == 200
    assert fake_openai.requests[0]["json"]["model"] == "gpt-4.1-nano"
    assert response.json["data"]["usage"]["modelName"] == "gpt-4.1-nano"


def test_generation_requires_a_token(client):
    response = client.post("/api/test-generation", json={"prompt": "x"})
    assert response.status_code == 401


def test_generation_validates_its_body(client, user_headers):
    for body, field in (({}, "prompt"), ({"prompt": ""}, "prompt"), ({"prompt": "x", "count": 0}, "count"),
                        ({"prompt": "x", "count": 21}, "count"), ({"prompt": "x", "count": "many"}, "count")):
        response = client.post("/api/test-generation", json=body, headers=user_headers)
        assert response.status_code == 422, body
        assert field in response.json["errors"]
        assert field in response.json["message"]


def test_an_unparseable_reply_is_502_and_still_recorded_as_unreadable(openai_app, fake_openai):
    client = openai_app.test_client()
    create_user(openai_app, "dev@example.com")
    fake_openai.reply(chat_completion("Sorry, I can't do that.", 40, 8))
    response = client.post("/api/test-generation", json={"prompt": "x"}, headers=bearer(client, "dev@example.com"))
    assert response.status_code == 502
    assert response.json["message"].startswith("The model's reply could not be read as test cases")
    with openai_app.app_context():
        records = list(get_db()[USAGE].find())
    assert [(r["promptTokens"], r["completionTokens"], r["outcome"], r["httpStatus"]) for r in records] == [
        (40, 8, "unreadable", 502)]


def test_provider_outages_are_gateway_errors_without_internals(openai_app, fake_openai):
    client = openai_app.test_client()
    create_user(openai_app, "dev@example.com")
    headers = bearer(client, "dev@example.com")
    for reply, status in ((httpx2.Response(503, json={"error": {"message": "overloaded"}}), 502),
                          (httpx2.Response(429, json={"error": {"message": "slow down"}}), 503),
                          (httpx2.ReadTimeout("timed out"), 504)):
        fake_openai.reply(reply)
        response = client.post("/api/test-generation", json={"prompt": "x"}, headers=headers)
        assert response.status_code == status
        assert response.json["success"] is False
        assert "Traceback" not in response.get_data(as_text=True)
        assert "sk-test" not in response.get_data(as_text=True)


def test_one_case_is_one_test_case(client, user_headers):
    response = client.post("/api/test-generation", json={"prompt": "Password reset", "count": 1},
                           headers=user_headers)
    assert response.json["message"] == "Generated 1 test case" and len(response.json["data"]["testCases"]) == 1
