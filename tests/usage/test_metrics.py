"""/metrics: Prometheus text that prometheus_client's own parser reads, with counters matching the ledger."""
from collections import defaultdict

import httpx2
import pytest
from prometheus_client.parser import text_string_to_metric_families

from backend.db import USAGE, get_db
from tests.helpers import bearer, cases_json, chat_completion, create_user

KINDS = {"input": "promptTokens", "cached_input": "cachedInputTokens", "cache_write": "cacheWriteTokens",
         "output": "completionTokens", "reasoning": "reasoningTokens"}


def scrape(client, headers=None):
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=")
    samples = defaultdict(dict)
    for family in text_string_to_metric_families(response.get_data(as_text=True)):
        for sample in family.samples:
            samples[sample.name][tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def test_counters_match_the_ledger(openai_app, fake_openai):
    client = openai_app.test_client()
    create_user(openai_app, "dev@example.com")
    user = create_user(openai_app, "capped@example.com")
    create_user(openai_app, "root@example.com", role="admin")
    headers = bearer(client, "dev@example.com")
    fake_openai.reply(chat_completion(cases_json(1), 1200, 300, cached=1024, reasoning=128))
    fake_openai.reply(chat_completion(cases_json(2), 800, 450))
    fake_openai.reply(httpx2.Response(500, json={"error": {"message": "boom", "type": "server_error"}}))
    fake_openai.reply(chat_completion(cases_json(1), 95, 60, model="gpt-4o-2024-08-06"))

    assert client.post("/api/test-generation", json={"prompt": "a", "count": 1}, headers=headers).status_code == 200
    assert client.post("/api/testcases/generate-with-ai", json={"prompt": "b", "count": 2},
                       headers=headers).status_code == 200
    assert client.post("/api/test-generation", json={"prompt": "c", "count": 1}, headers=headers).status_code == 502
    assert client.post("/api/test-generation", json={"prompt": "d", "count": 1, "model": "gpt-4o"},
                       headers=headers).status_code == 200
    client.put(f"/admin/openai/budgets/{user['_id']}", json={"tokensPerDay": 10},
               headers=bearer(client, "root@example.com"))
    assert client.post("/api/test-generation", json={"prompt": "e", "count": 1},
                       headers=bearer(client, "capped@example.com")).status_code == 429

    samples = scrape(client)

    with openai_app.app_context():
        records = list(get_db()[USAGE].find())
    assert len(records) == 3
    expected_tokens, expected_cost = defaultdict(int), defaultdict(float)
    for r in records:
        labels = (("model", r["modelName"]), ("operation", r["operation"]), ("provider", r["provider"]))
        for kind, field in KINDS.items():
            expected_tokens[tuple(sorted((*labels, ("kind", kind))))] += r[field]
        expected_cost[labels] += r["cost"]
    assert samples["tokenledger_tokens_total"] == dict(expected_tokens)
    assert samples["tokenledger_tokens_total"][(("kind", "cached_input"), ("model", "gpt-4o-mini"),
                                                ("operation", "test_generation"), ("provider", "openai"))] == 1024
    assert samples["tokenledger_cost_usd_total"].keys() == expected_cost.keys()
    for labels, cost in expected_cost.items():
        assert samples["tokenledger_cost_usd_total"][labels] == pytest.approx(cost, rel=1e-12)
    assert samples["tokenledger_llm_calls_total"] == {(("outcome", "ok"), ("provider", "openai")): 3,
                                                      (("outcome", "error_502"), ("provider", "openai")): 1}
    assert samples["tokenledger_llm_latency_seconds_count"] == {(("provider", "openai"),): 3}
    assert samples["tokenledger_usage_writes_total"] == {(): 3}
    assert samples["tokenledger_usage_write_failures_total"] == {(): 0}
    assert samples["tokenledger_budget_rejections_total"] == {(("window", "day"),): 1}


def test_metrics_token_is_required_when_set(make_app):
    client = make_app(METRICS_TOKEN="scrape-me-please").test_client()
    assert client.get("/metrics").status_code == 401
    wrong = client.get("/metrics", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong.json["success"] is False
    assert "METRICS_TOKEN" in wrong.json["message"]
    assert "tokenledger_usage_writes_total 0.0" in client.get(
        "/metrics", headers={"Authorization": "Bearer scrape-me-please"}).get_data(as_text=True)


def test_metrics_are_open_without_a_token(client):
    assert scrape(client)["tokenledger_usage_spooled_total"] == {(): 0}
