"""The four tracking conditions, one by one, and a failing write that leaves the response intact."""
import logging

import mongomock
from flask_jwt_extended import jwt_required
from pymongo.errors import AutoReconnect

from backend.db import USAGE, get_db
from backend.llm.calls import call_llm
from backend.llm.registry import get_provider
from backend.usage.capture import add_calls, tracked
from tests.helpers import bearer, cases_json, chat_completion, create_user

MESSAGES = [{"role": "user", "content": "Write exactly 1 test cases for this feature.\n\nFeature:\nx"}]


def add_probe_routes(app):
    """Routes that make an LLM call: one untracked, one tracked without authentication."""

    def make_call():
        add_calls([call_llm(get_provider(), MESSAGES, get_provider().default_model, 100, {})])
        return {"ok": True}

    app.add_url_rule("/probe/untracked", "untracked", jwt_required()(make_call), methods=["POST"])
    app.add_url_rule("/probe/anonymous", "anonymous", tracked("probe")(make_call), methods=["POST"])


def ledger_count(app):
    with app.app_context():
        return get_db()[USAGE].count_documents({})


def test_a_successful_authenticated_tracked_call_with_usage_is_recorded(app, client, user_headers, caplog):
    with caplog.at_level(logging.INFO, logger="backend.usage"):
        response = client.post("/api/test-generation", json={"prompt": "x", "count": 1}, headers=user_headers)
    assert response.status_code == 200
    assert ledger_count(app) == 1
    assert "OpenAI usage tracked: user=user@example.com provider=demo model=demo" in caplog.text


def test_condition_1_an_untracked_endpoint_records_nothing(make_app):
    app = make_app()
    add_probe_routes(app)
    client = app.test_client()
    create_user(app, "u@example.com")
    response = client.post("/probe/untracked", headers=bearer(client, "u@example.com"))
    assert response.status_code == 200
    assert ledger_count(app) == 0


def test_condition_2_an_error_status_records_nothing(openai_app, fake_openai):
    client = openai_app.test_client()
    create_user(openai_app, "u@example.com")
    fake_openai.reply(chat_completion("not json at all", 30, 5))
    response = client.post("/api/test-generation", json={"prompt": "x"}, headers=bearer(client, "u@example.com"))
    assert response.status_code == 502
    assert ledger_count(openai_app) == 0


def test_condition_3_an_anonymous_caller_records_nothing(make_app):
    app = make_app()
    add_probe_routes(app)
    response = app.test_client().post("/probe/anonymous")
    assert response.status_code == 200
    assert ledger_count(app) == 0


def test_condition_4_a_call_without_reported_usage_records_nothing_and_warns(openai_app, fake_openai, caplog):
    client = openai_app.test_client()
    create_user(openai_app, "u@example.com")
    fake_openai.reply(chat_completion(cases_json(1), 0, 0, usage=False))
    with caplog.at_level(logging.WARNING, logger="backend.usage"):
        response = client.post("/api/test-generation", json={"prompt": "x", "count": 1},
                               headers=bearer(client, "u@example.com"))
    assert response.status_code == 200
    assert response.json["data"]["usage"]["usageReported"] is False
    assert ledger_count(openai_app) == 0
    assert "Usage not recorded: openai returned no usage for model gpt-4o-mini" in caplog.text


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
