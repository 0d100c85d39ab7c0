"""What the after-request capture records, and a failing write that leaves the response intact."""
import logging

import mongomock
from flask_jwt_extended import jwt_required
from pymongo.errors import AutoReconnect

from backend.db import USAGE, get_db
from backend.llm.registry import get_provider
from tests.helpers import bearer, cases_json, chat_completion, create_user

MESSAGES = [{"role": "user", "content": "Write exactly 1 test cases for this feature.\n\nFeature:\nx"}]


def ledger(app):
    with app.app_context():
        return list(get_db()[USAGE].find())


def test_a_successful_authenticated_tracked_call_with_usage_is_recorded(app, client, user_headers, caplog):
    with caplog.at_level(logging.INFO, logger="backend.usage"):
        response = client.post("/api/test-generation", json={"prompt": "x", "count": 1}, headers=user_headers)
    assert response.status_code == 200
    [record] = ledger(app)
    assert (record["outcome"], record["httpStatus"], record["estimated"]) == ("ok", 200, False)
    assert "user=user@example.com provider=demo model=demo" in caplog.text


def test_a_view_that_is_not_a_generation_endpoint_records_nothing(make_app):
    app = make_app()

    def untracked():
        get_provider().complete(MESSAGES, "demo", 100)
        return {"ok": True}

    app.add_url_rule("/probe/untracked", "untracked", jwt_required()(untracked), methods=["POST"])
    client = app.test_client()
    create_user(app, "u@example.com")
    assert client.post("/probe/untracked", headers=bearer(client, "u@example.com")).status_code == 200
    assert ledger(app) == []


def test_an_error_status_is_recorded_with_its_outcome_not_dropped(openai_app, fake_openai):
    client = openai_app.test_client()
    create_user(openai_app, "u@example.com")
    fake_openai.reply(chat_completion("not json at all", 30, 5))
    response = client.post("/api/test-generation", json={"prompt": "x"}, headers=bearer(client, "u@example.com"))
    assert response.status_code == 502
    assert [(r["promptTokens"], r["completionTokens"], r["outcome"], r["httpStatus"]) for r in ledger(openai_app)] == [
        (30, 5, "unreadable", 502)]


def test_a_call_without_reported_usage_is_recorded_as_an_estimate(openai_app, fake_openai, caplog):
    client = openai_app.test_client()
    create_user(openai_app, "u@example.com")
    fake_openai.reply(chat_completion(cases_json(1), 0, 0, usage=False))
    with caplog.at_level(logging.WARNING):
        response = client.post("/api/test-generation", json={"prompt": "x", "count": 1},
                               headers=bearer(client, "u@example.com"))
    assert response.status_code == 200
    usage = response.json["data"]["usage"]
    assert (usage["usageReported"], usage["estimated"]) == (False, True)
    [record] = ledger(openai_app)
    assert (record["usageReported"], record["estimated"], record["outcome"]) == (False, True, "ok")
    assert record["callId"] == usage["callIds"][0]
    assert (record["promptTokens"], record["completionTokens"]) == (usage["promptTokens"], usage["completionTokens"])
    assert record["completionTokens"] > 0
    assert "recorded as an estimate" in caplog.text


def test_a_failing_write_leaves_the_response_intact(app, client, user_headers, monkeypatch, caplog):
    def database_down(self, *args, **kwargs):
        raise AutoReconnect("connection refused")

    monkeypatch.setattr(mongomock.collection.Collection, "insert_many", database_down)
    with caplog.at_level(logging.ERROR, logger="backend.usage"):
        response = client.post("/api/test-generation", json={"prompt": "x", "count": 2}, headers=user_headers)
    assert response.status_code == 200
    assert len(response.json["data"]["testCases"]) == 2
    assert "Failed to write 1 usage record(s)" in caplog.text
    assert response.json["data"]["usage"]["callIds"][0] in caplog.text
