"""Edges an outside audit of the tracked-call redesign found: each billed call still lands in the
ledger once, estimates stay within what was reserved, and failures answer with the right status."""
import importlib.util

import httpx2
from pymongo.errors import AutoReconnect

from backend.db import BUDGET_COUNTERS, USAGE, get_db
from tests.helpers import ROOT, bearer, cases_json, chat_completion, create_user, openai_stream, read_events

MAX_OUTPUT = 300


def app_for(make_app, fake_openai, **overrides):
    app = make_app(LLM_PROVIDER="openai", OPENAI_API_KEY="sk-test", LLM_MAX_RETRIES=0,
                   LLM_MAX_OUTPUT_TOKENS=MAX_OUTPUT, LLM_TRANSPORTS={"openai": fake_openai.transport}, **overrides)
    app.config["LLM_ALLOWED_MODELS"] = {**app.config["LLM_ALLOWED_MODELS"], "openai": "*"}
    create_user(app, "root@example.com", role="admin")
    user = create_user(app, "dev@example.com")
    client = app.test_client()
    assert client.put(f"/admin/openai/budgets/{user['_id']}", json={"tokensPerDay": 10**6},
                      headers=bearer(client, "root@example.com")).status_code == 200
    return app, client, bearer(client, "dev@example.com")


def ledger_and_counter(app):
    with app.app_context():
        db = get_db()
        records = list(db[USAGE].find())
        counter = db[BUDGET_COUNTERS].find_one({"window": "day", "owner": {"$regex": "^[0-9a-f]{24}$"}})
    return records, counter


def test_a_timeout_of_a_model_without_a_price_is_recorded_as_an_unpriced_estimate(make_app, fake_openai):
    app, client, headers = app_for(make_app, fake_openai)
    fake_openai.reply(httpx2.ReadTimeout("read timed out"))
    response = client.post("/api/test-generation", json={"prompt": "x", "count": 1, "model": "my-finetune"},
                           headers=headers)
    assert response.status_code == 504
    [record], counter = ledger_and_counter(app)
    assert (record["modelName"], record["outcome"], record["estimated"], record["priced"], record["cost"]) == (
        "my-finetune", "timeout", True, False, 0.0)
    assert counter["tokens"] == record["totalTokens"]


def test_an_estimate_never_counts_more_output_than_the_call_asked_for(make_app, fake_openai):
    app, client, headers = app_for(make_app, fake_openai)
    long_text = cases_json(2) + " ".join(str(n) for n in range(3000))  # far more than MAX_OUTPUT tokens
    fake_openai.reply(chat_completion(long_text, 0, 0, usage=False))
    assert client.post("/api/test-generation", json={"prompt": "x", "count": 2}, headers=headers).status_code == 200
    [record], counter = ledger_and_counter(app)
    assert record["estimated"] is True and record["completionTokens"] == MAX_OUTPUT
    assert counter["tokens"] == record["totalTokens"]


def test_a_streamed_save_that_meets_a_database_outage_says_503(make_app, fake_openai, monkeypatch):
    app, client, headers = app_for(make_app, fake_openai)
    fake_openai.reply(openai_stream(cases_json(2), 400, 100))

    def database_down(*args, **kwargs):
        raise AutoReconnect("connection reset")

    monkeypatch.setattr("backend.testcases.repository.insert_cases", database_down)
    response = client.post("/api/testcases/generate-and-save-with-ai", json={"prompt": "x", "count": 2,
                                                                             "stream": True}, headers=headers)
    name, error = read_events(response)[-1]
    assert (name, error["status"], error["message"]) == ("error", 503, "The database is unavailable; please try again "
                                                                      "shortly")
    monkeypatch.undo()
    [record], _ = ledger_and_counter(app)
    assert (record["outcome"], record["totalTokens"]) == ("failed_after_call", 500)


def test_a_request_refused_by_the_input_guard_still_echoes_its_request_id(client):
    response = client.post("/api/test-generation", data=b"{" * 10, headers={"X-Request-ID": "audit-123",
                                                                            "Content-Type": "application/json"})
    assert response.status_code == 400 and response.headers["X-Request-ID"] == "audit-123"


def test_gunicorn_runs_threaded_workers_that_no_long_call_gets_killed_by():
    spec = importlib.util.spec_from_file_location("gunicorn_conf", ROOT / "gunicorn.conf.py")
    conf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conf)
    assert (conf.worker_class, conf.threads) == ("gthread", 8)
