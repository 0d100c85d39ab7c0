"""Each embedding provider through its official SDK, faked at the HTTP transport with its real reply
shape; the configuration of EMBEDDING_PROVIDER; the backfill script; the in-process index."""
import json
from decimal import Decimal

import httpx
import httpx2
import numpy as np
import pytest
from bson import ObjectId

from backend.config import ConfigError, load_config
from backend.db import get_db
from backend.llm.specs import embedding_choice
from backend.testcases import vectors
from backend.testcases.embeddings import embed_due
from backend.testcases.vectors import Pool, VectorIndex
from tests.helpers import (
    bearer,
    create_user,
    gemini_embeddings,
    ollama_embeddings,
    openai_embeddings,
)

TITLES = ("Login with a valid password", "Login is refused after five failures")


def saved(app, titles=TITLES):
    client = app.test_client()
    create_user(app, "dev@example.com")
    headers = bearer(client, "dev@example.com")
    for title in titles:
        assert client.post("/api/testcases", json={"title": title}, headers=headers).status_code == 201
    return client, headers


def records(app):
    return list(get_db(app).openai_token_usage.find({"operation": "embedding"}))


def test_gemini_embeddings_are_counted_with_its_count_tokens_api(make_app, fakes):
    app = make_app(LLM_PROVIDER="gemini", GEMINI_API_KEY="g-test", LLM_MAX_RETRIES=0,
                   LLM_TRANSPORTS={"gemini": fakes["gemini"].transport})
    saved(app)
    fakes["gemini"].reply(gemini_embeddings([[0.1, 0.2], [0.3, 0.4]]))
    fakes["gemini"].reply({"totalTokens": 14})
    assert embed_due(app) == 2
    embed, count = fakes["gemini"].requests
    assert embed["url"].endswith("/models/gemini-embedding-001:batchEmbedContents")
    assert [r["content"]["parts"][0]["text"] for r in embed["json"]["requests"]] == list(TITLES)
    assert count["url"].endswith("/models/gemini-embedding-001:countTokens")
    [record] = records(app)
    assert (record["provider"], record["modelName"], record["promptTokens"]) == ("gemini", "gemini-embedding-001", 14)
    assert record["estimated"] is False
    # gemini-embedding-001: $0.15 per million input tokens.
    assert Decimal(str(record["cost"])) == 14 * Decimal("0.15") / 10**6


def test_gemini_embeddings_are_estimated_when_tokens_cannot_be_counted(make_app, fakes):
    app = make_app(LLM_PROVIDER="gemini", GEMINI_API_KEY="g-test", LLM_MAX_RETRIES=0,
                   LLM_TRANSPORTS={"gemini": fakes["gemini"].transport})
    saved(app)
    fakes["gemini"].reply(gemini_embeddings([[0.1, 0.2], [0.3, 0.4]]))
    fakes["gemini"].reply(httpx2.Response(400, json={"error": {"code": 400, "message": "not supported",
                                                               "status": "INVALID_ARGUMENT"}}))
    assert embed_due(app) == 2
    [record] = records(app)
    # Gemini's tokenizer is not available offline: at most one token per UTF-8 byte (the reservation's bound).
    assert record["estimated"] is True and record["promptTokens"] == sum(len(t.encode()) for t in TITLES)


def test_ollama_embeddings_report_prompt_eval_count_and_cost_nothing(make_app, fakes):
    app = make_app(LLM_PROVIDER="ollama", LLM_MAX_RETRIES=0, LLM_TRANSPORTS={"ollama": fakes["ollama"].transport})
    saved(app)
    fakes["ollama"].reply(ollama_embeddings([[0.5, 0.5, 0.1], [0.1, 0.2, 0.3]], 11))
    assert embed_due(app) == 2
    [request] = fakes["ollama"].requests
    assert request["url"].endswith("/api/embed")
    assert request["json"] == {"model": "nomic-embed-text", "input": list(TITLES)}
    [record] = records(app)
    assert (record["promptTokens"], record["cost"], record["estimated"]) == (11, 0.0, False)


def test_embedding_dimensions_are_asked_for_and_vectors_keyed_by_them(make_app, fake_openai):
    app = make_app(LLM_PROVIDER="openai", OPENAI_API_KEY="sk-test", LLM_MAX_RETRIES=0, EMBEDDING_DIMENSIONS=2,
                   LLM_TRANSPORTS={"openai": fake_openai.transport})
    saved(app)
    fake_openai.reply(openai_embeddings([[0.6, 0.8], [1.0, 0.0]], 12))
    assert embed_due(app) == 2
    assert fake_openai.requests[0]["json"]["dimensions"] == 2
    assert {row["key"] for row in get_db(app).testcase_embeddings.find()} == {"openai/text-embedding-3-small/2"}


@pytest.mark.parametrize("env, expected", [
    ({}, ("demo", "demo-embedding")),
    ({"LLM_PROVIDER": "openai", "OPENAI_API_KEY": "sk"}, ("openai", "text-embedding-3-small")),
    ({"LLM_PROVIDER": "anthropic", "ANTHROPIC_API_KEY": "a"}, ("demo", "demo-embedding")),
    ({"LLM_PROVIDER": "ollama", "EMBEDDING_MODEL": "mxbai-embed-large"}, ("ollama", "mxbai-embed-large")),
    ({"LLM_PROVIDER": "anthropic", "ANTHROPIC_API_KEY": "a", "EMBEDDING_PROVIDER": "gemini", "GEMINI_API_KEY": "g"},
     ("gemini", "gemini-embedding-001")),
])
def test_the_embedding_provider_is_the_chat_providers_when_it_has_one_else_demo(env, expected):
    config, _ = load_config(env)
    assert embedding_choice(config) == expected


@pytest.mark.parametrize("env, message", [
    ({"EMBEDDING_PROVIDER": "anthropic", "ANTHROPIC_API_KEY": "a"},
     "EMBEDDING_PROVIDER=anthropic: anthropic has no embeddings API; choose one of openai, gemini, ollama, demo"),
    ({"EMBEDDING_PROVIDER": "openai"}, "OPENAI_API_KEY is required when EMBEDDING_PROVIDER is openai"),
    ({"EMBEDDING_PROVIDER": "cohere"}, "EMBEDDING_PROVIDER must be one of openai, gemini, ollama, demo, got 'cohere'"),
    ({"EMBEDDING_MODEL": "bad model"}, "EMBEDDING_MODEL must be a model name, got 'bad model'"),
])
def test_a_provider_without_embeddings_is_a_one_line_configuration_error(env, message):
    with pytest.raises(ConfigError) as error:
        load_config(env)
    assert str(error.value) == message


def test_the_backfill_embeds_old_cases_resumes_from_its_checkpoint_and_reembeds_after_a_model_change(
        make_app, tmp_path):
    calls = []

    def handler(request):
        body = json.loads(request.content)
        calls.append(body)
        return httpx2.Response(200, json=openai_embeddings([[1.0, float(n)] for n in range(len(body["input"]))],
                                                           len(body["input"]), model=body["model"]))

    app = make_app(LLM_PROVIDER="openai", OPENAI_API_KEY="sk-test", LLM_MAX_RETRIES=0, EMBEDDING_BATCH_SIZE=2,
                   LLM_TRANSPORTS={"openai": httpx2.MockTransport(handler)})
    saved(app, [f"Case {n}" for n in range(5)])
    # Cases saved before embeddings existed have no embedding state at all.
    get_db(app).testcases.update_many({}, {"$unset": {"embedding": ""}})
    checkpoint = tmp_path / "embed.json"
    runner = app.test_cli_runner()
    first = runner.invoke(args=["embed-cases", "--checkpoint", str(checkpoint), "--limit", "3"])
    assert first.exit_code == 0, first.output
    assert "3 test case(s) to embed with openai/text-embedding-3-small/" in first.output
    assert "embedded 3 test case(s)" in first.output
    assert json.loads(checkpoint.read_text())["embedded"] == 3
    second = runner.invoke(args=["embed-cases", "--checkpoint", str(checkpoint)])
    assert "2 test case(s) to embed" in second.output and "embedded 2 test case(s)" in second.output
    assert sorted(text for call in calls for text in call["input"]) == [f"Case {n}" for n in range(5)]
    assert sum(r["promptTokens"] for r in records(app)) == 5  # each case billed once
    assert runner.invoke(args=["embed-cases", "--checkpoint", str(checkpoint)]).output.startswith("0 test case(s)")

    calls.clear()
    large = make_app(LLM_PROVIDER="openai", OPENAI_API_KEY="sk-test", LLM_MAX_RETRIES=0, EMBEDDING_BATCH_SIZE=5,
                     EMBEDDING_MODEL="text-embedding-3-large", LLM_TRANSPORTS={"openai": httpx2.MockTransport(handler)},
                     MONGO_CLIENT=get_db(app).client)
    again = large.test_cli_runner().invoke(args=["embed-cases", "--checkpoint", str(checkpoint)])
    assert "embedded 5 test case(s)" in again.output and [c["model"] for c in calls] == ["text-embedding-3-large"]
    keys = {row["key"] for row in get_db(app).testcase_embeddings.find()}
    assert keys == {"openai/text-embedding-3-large/2"}


def test_the_backfill_stops_on_a_failed_batch_and_says_how_to_resume(make_app, fake_openai, tmp_path):
    app = make_app(LLM_PROVIDER="openai", OPENAI_API_KEY="sk-test", LLM_MAX_RETRIES=0,
                   LLM_TRANSPORTS={"openai": fake_openai.transport})
    saved(app)
    fake_openai.reply(httpx2.Response(500, json={"error": {"message": "boom"}}))
    result = app.test_cli_runner().invoke(args=["embed-cases", "--checkpoint", str(tmp_path / "c.json")])
    assert result.exit_code == 1 and "stopped: OpenAI returned HTTP 500: boom; run again to resume" in result.output


def test_a_pool_grows_a_quarter_at_a_time_and_drops_by_moving_the_last_row():
    pool = Pool(2)
    for n in range(40):
        pool.put(n, [1.0, float(n)])
    # 16 rows, then 17 + 4 = 21, 22 + 5 = 27, 28 + 7 = 35, 36 + 9 = 45.
    assert pool.size == 40 and pool.matrix.shape == (45, 2)
    pool.drop(3)
    assert pool.size == 39 and pool.ids[3] == 39 and pool.rows[39] == 3
    pool.put(5, [0.0, 1.0])  # replaced in place
    top = pool.top(np.array([0.0, 2.0]), 2, 0.0)
    assert top[0] == (5, 1.0) and top[1][0] == 39
    assert pool.top(np.array([1.0, 0.0]), 10, 0.9999) == [(0, 1.0)]
    pool.put_many(list(range(40, 100)), [[1.0, 0.5]] * 60)  # 99 rows: 99 + 24
    assert pool.size == 99 and pool.matrix.shape == (123, 2)


def test_an_index_reads_other_processes_writes_incrementally(monkeypatch):
    stored = {("ann", "k"): [(ObjectId(), np.array([1.0, 0.0]), 1)]}
    reads = []

    def changed(owner, key, since):
        reads.append(since)
        return [row for row in stored[(owner, key)] if row[2] >= since]

    index = VectorIndex(1 << 20, load=lambda owner, key: list(stored[(owner, key)]), changed=changed)
    assert len(index.search("ann", "k", [1.0, 0.0], 5, 0.5)) == 1
    new = ObjectId()
    stored[("ann", "k")].append((new, np.array([0.8, 0.6]), 2))
    assert len(index.search("ann", "k", [1.0, 0.0], 5, 0.5)) == 1  # not looked for again yet
    monkeypatch.setattr(vectors, "REFRESH_SECONDS", 0.0)
    found = index.search("ann", "k", [1.0, 0.0], 5, 0.5)
    assert [case for case, _ in found][1] == new and reads == [1]  # only what changed since the newest seen


def test_the_index_keeps_within_its_byte_budget():
    index = VectorIndex(4 * 16 * 4 * 2, load=lambda owner, key: [(1, np.ones(4), 1)], changed=lambda *a: [])
    for owner in ("a", "b", "c"):
        index.search(owner, "k", [1.0] * 4, 1, 0.0)
    assert index.nbytes <= 4 * 16 * 4 * 2 and len(index._pools) == 2


def test_an_ollama_outage_leaves_cases_pending(make_app, fakes):
    app = make_app(LLM_PROVIDER="ollama", LLM_MAX_RETRIES=0, LLM_TRANSPORTS={"ollama": fakes["ollama"].transport})
    saved(app)
    fakes["ollama"].reply(httpx.ConnectError("connection refused"))
    assert embed_due(app) == 0 and records(app) == []
    assert get_db(app).testcases.count_documents({"embedding.status": "pending", "embedding.attempts": 1}) == 2
