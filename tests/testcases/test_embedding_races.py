"""Races and replies an outside attack found (issue 26): a reply for an outdated text, vectors
written long after their batch began, the backfill beside the worker, deletes seen by another
process, vectors beyond float32, OpenAI indices that say nothing, keys that only share a prefix."""
from datetime import timedelta

import httpx2
from bson import ObjectId

from backend.db import get_db
from backend.testcases import repository, vectors
from backend.testcases.embeddings import Checkpoint, _current_keys, backfill, embed_due, Embedder
from backend.testcases.vectors import decode
from tests.helpers import (
    Clock,
    FakeLLMServer,
    bearer,
    cases_json,
    chat_completion,
    create_user,
    ollama_embeddings,
    openai_embeddings,
    utc,
)
from tests.testcases.test_embeddings import ledger, save_cases


def second(make_app, rag_app, transport, clock, **extra):
    return make_app(LLM_PROVIDER="openai", OPENAI_API_KEY="sk-test", LLM_MAX_RETRIES=0,
                    LLM_TRANSPORTS={"openai": transport}, MONGO_CLIENT=get_db(rag_app).client,
                    JWT_SECRET_KEY=rag_app.config["JWT_SECRET_KEY"], CLOCK=clock, **extra)


def rag(client, headers, fake, vector, limit=3, threshold=0.5):
    fake.reply(openai_embeddings([vector], 5))
    fake.reply(chat_completion(cases_json(1), 100, 20))
    response = client.post("/api/test-generation", headers=headers, json={
        "prompt": "q", "count": 1, "useRAG": True, "ragSimilarityThreshold": threshold, "maxRAGReferences": limit})
    assert response.status_code == 200, response.json
    return [r["title"] for r in response.json["data"]["references"]], response.json["data"]["ragStatus"]


def test_a_reply_for_an_outdated_text_never_replaces_the_newer_vector(rag_app, fake_openai, dev, clock, make_app):
    client, headers, _ = dev
    [case] = save_cases(client, headers, ["Old title about invoices"])
    other = FakeLLMServer()
    worker_b = second(make_app, rag_app, other.transport, clock)

    def worker_a_provider(request):  # while A waits: the user edits, B embeds the new text first
        assert client.patch(f"/api/testcases/{case['id']}", json={"title": "New title about passwords"},
                            headers=headers).status_code == 200
        other.reply(openai_embeddings([[0.0, 1.0, 0.0]], 4))
        assert embed_due(worker_b) == 1
        return httpx2.Response(200, json=openai_embeddings([[1.0, 0.0, 0.0]], 4))

    worker_a = second(make_app, rag_app, httpx2.MockTransport(worker_a_provider), clock)
    assert embed_due(worker_a) == 0  # its vector is of a text the case no longer has
    db = get_db(rag_app)
    state = db.testcases.find_one({"_id": ObjectId(case["id"])})["embedding"]
    row = db.testcase_embeddings.find_one({"_id": ObjectId(case["id"])})
    assert state["status"] == "embedded" and row["textHash"] == state["textHash"]
    assert decode(row["vector"]).tolist() == [0.0, 1.0, 0.0]


def test_a_vector_written_long_after_its_batch_began_reaches_other_processes_pools(
        rag_app, fake_openai, dev, clock, make_app, monkeypatch):
    monkeypatch.setattr(vectors, "REFRESH_SECONDS", 0.0)
    client, headers, _ = dev
    save_cases(client, headers, ["Alpha case"])
    assert rag(client, headers, fake_openai, [1.0, 0.0, 0.0])[0] == []  # this process's pool is loaded

    def slow_provider(request):  # another process's call takes 90 s; meanwhile this one embeds a newer case
        clock.at += timedelta(seconds=90)
        save_cases(client, headers, ["Beta case"])
        fake_openai.reply(openai_embeddings([[0.0, 1.0, 0.0]], 2))
        assert embed_due(rag_app) == 1
        return httpx2.Response(200, json=openai_embeddings([[1.0, 0.0, 0.0]], 2))

    assert embed_due(second(make_app, rag_app, httpx2.MockTransport(slow_provider), clock)) == 1
    assert rag(client, headers, fake_openai, [1.0, 0.0, 0.0])[0] == ["Alpha case"]


def test_deletes_seen_late_by_another_process_never_hide_a_live_reference(rag_app, fake_openai, dev, clock, make_app):
    client, headers, _ = dev
    duplicates = save_cases(client, headers, [f"Duplicate {n}" for n in range(10)])
    save_cases(client, headers, ["Live match"])
    fake_openai.reply(openai_embeddings([[1.0, 0.0, 0.0]] * 10 + [[0.9, 0.1, 0.0]], 50))
    assert embed_due(rag_app) == 11
    other = FakeLLMServer()
    b = second(make_app, rag_app, other.transport, clock).test_client()
    assert rag(b, headers, other, [1.0, 0.0, 0.0], limit=1)[0] == ["Duplicate 0"]  # its pool is loaded
    for case in duplicates:
        assert client.delete(f"/api/testcases/{case['id']}", headers=headers).status_code == 200
    assert rag(b, headers, other, [1.0, 0.0, 0.0], limit=1) == (["Live match"], "searched")


def test_the_backfill_leaves_a_case_the_worker_is_embedding_to_it(rag_app, fake_openai, dev, clock, make_app,
                                                                  tmp_path):
    client, headers, _ = dev
    save_cases(client, headers, ["One", "Two", "Three"])
    script = FakeLLMServer()
    backfill_app = second(make_app, rag_app, script.transport, clock)

    def worker_provider(request):  # the backfill runs while the worker waits for its provider
        assert backfill(backfill_app, Checkpoint(str(tmp_path / "cp.json"))) == (0, 3)
        return httpx2.Response(200, json=openai_embeddings([[1.0, 0.0, 0.0]] * 3, 3))

    assert embed_due(second(make_app, rag_app, httpx2.MockTransport(worker_provider), clock)) == 3
    assert script.requests == [] and len(ledger(rag_app, operation="embedding")) == 1


def test_a_vector_beyond_float32_is_unreadable_and_tried_again_later_without_blocking_others(make_app, fakes):
    clock = Clock(utc(2026, 12, 1, 9))
    app = make_app(LLM_PROVIDER="ollama", LLM_MAX_RETRIES=0, LLM_TRANSPORTS={"ollama": fakes["ollama"].transport},
                   CLOCK=clock)
    client = app.test_client()
    create_user(app, "dev@example.com")
    create_user(app, "other@example.com")
    headers, other = bearer(client, "dev@example.com"), bearer(client, "other@example.com")
    assert client.post("/api/testcases", json={"title": "Huge"}, headers=headers).status_code == 201
    assert client.post("/api/testcases", json={"title": "Innocent"}, headers=other).status_code == 201
    fakes["ollama"].reply(ollama_embeddings([[1e39, 0.0, 0.0]], 3))
    fakes["ollama"].reply(ollama_embeddings([[0.5, 0.5, 0.0]], 2))
    assert embed_due(app) == 1
    [bad, good] = ledger(app, operation="embedding")
    assert bad["outcome"] == "unreadable" and bad["promptTokens"] == 3 and good["outcome"] == "ok"
    huge = get_db(app).testcases.find_one({"title": "Huge"})["embedding"]
    assert huge["status"] == "pending" and huge["attempts"] == 1 and "not finite" in huge["lastError"]
    assert get_db(app).testcases.find_one({"title": "Innocent"})["embedding"]["status"] == "embedded"
    clock.at += timedelta(seconds=29)
    assert embed_due(app) == 0 and len(fakes["ollama"].requests) == 2  # backing off: 30 s, then 60 s...


def test_openai_indices_that_are_not_0_to_n_make_the_reply_unreadable(rag_app, fake_openai, dev):
    client, headers, _ = dev
    save_cases(client, headers, ["A", "B", "C"])
    body = openai_embeddings([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], 3)
    body["data"][1]["index"] = 0
    fake_openai.reply(body)
    assert embed_due(rag_app) == 0
    assert get_db(rag_app).testcase_embeddings.count_documents({}) == 0
    assert [r["outcome"] for r in ledger(rag_app)] == ["unreadable"]


def test_a_key_of_another_length_that_shares_the_prefix_is_not_current(make_app, fake_openai):
    app = make_app(LLM_PROVIDER="openai", OPENAI_API_KEY="sk-test", EMBEDDING_DIMENSIONS=128,
                   LLM_TRANSPORTS={"openai": fake_openai.transport})
    db = get_db(app)
    db.testcases.insert_one({"title": "t", "createdBy": None,
                             "embedding": {"status": "embedded", "key": "openai/text-embedding-3-small/1280"}})
    assert repository.count_not_embedded_with(db, _current_keys(Embedder.of(app)), None) == 1


def test_an_organization_that_does_not_allow_the_embedding_model_is_not_billed_for_it(rag_app, fake_openai, dev):
    client, headers, user = dev
    get_db(rag_app).organizations.update_one({"_id": user.get("orgId") or get_db(rag_app).organizations.find_one()["_id"]},
                                             {"$set": {"allowedModels": ["gpt-4o-mini"]}})
    save_cases(client, headers, ["Login"])
    assert embed_due(rag_app) == 0 and fake_openai.requests == []
    fake_openai.reply(chat_completion(cases_json(1), 100, 20))
    response = client.post("/api/test-generation", headers=headers,
                           json={"prompt": "Login", "count": 1, "useRAG": True})
    assert response.status_code == 200 and response.json["data"]["ragStatus"] == "unavailable"
    assert [r["operation"] for r in ledger(rag_app)] == ["test_generation"]
