"""Saved cases are embedded off the request path, billed to their owner in the ledger, and RAG ranks
them by cosine; the OpenAI SDK parses real (base64) embedding replies from a fake at its transport."""
from datetime import timedelta
from decimal import Decimal

import httpx2
import numpy as np
import pytest
import tiktoken
from bson import ObjectId

from backend.db import get_db
from backend.testcases.embeddings import embed_due
from backend.testcases.vectors import decode
from tests.helpers import (
    FakeLLMServer,
    bearer,
    cases_json,
    chat_completion,
    create_user,
    openai_embeddings,
    utc,
)

# text-embedding-3-small: $0.02 per million input tokens (OpenAI's price list).
EMBEDDING_PER_TOKEN = Decimal("0.02") / 10**6
TITLES = ("Password reset email is sent", "Password reset link expires", "Upload a profile picture")
VECTORS = ([1.0, 0.0, 0.0], [0.6, 0.8, 0.0], [0.0, 0.0, 1.0])


def save_cases(client, headers, titles=TITLES):
    saved = [client.post("/api/testcases", json={"title": title}, headers=headers) for title in titles]
    assert all(response.status_code == 201 for response in saved)
    return [response.json["data"] for response in saved]


def ledger(app, **query):
    return list(get_db(app).openai_token_usage.find(query).sort("timestamp"))


def embedded(rag_app, fake_openai, dev, tokens=37):
    client, headers, _ = dev
    cases = save_cases(client, headers)
    fake_openai.reply(openai_embeddings(VECTORS, tokens))
    assert embed_due(rag_app) == 3
    return cases


def test_saving_cases_makes_one_billed_embedding_call_for_the_batch(rag_app, fake_openai, dev):
    client, headers, user = dev
    cases = save_cases(client, headers)
    assert fake_openai.requests == []  # nothing on the request path
    assert [client.get(f"/api/testcases/{c['id']}/full", headers=headers).json["data"]["embedding"]["status"]
            for c in cases] == ["pending"] * 3

    fake_openai.reply(openai_embeddings(VECTORS, 37))
    assert embed_due(rag_app) == 3
    [request] = fake_openai.requests
    assert request["url"].endswith("/v1/embeddings")
    assert request["json"] == {"model": "text-embedding-3-small", "input": list(TITLES), "encoding_format": "base64"}

    [record] = ledger(rag_app)
    assert record["operation"] == "embedding" and record["provider"] == "openai"
    assert record["modelName"] == "text-embedding-3-small" and record["userId"] == user["_id"]
    assert (record["promptTokens"], record["completionTokens"], record["totalTokens"]) == (37, 0, 37)
    assert Decimal(str(record["cost"])) == 37 * EMBEDDING_PER_TOKEN
    assert record["estimated"] is False and record["outcome"] == "ok" and record["httpStatus"] is None
    assert record["metadata"] == {"source": "saved_test_cases", "cases": "3"}

    stored = {row["_id"]: row for row in get_db(rag_app).testcase_embeddings.find()}
    for case, vector in zip(cases, VECTORS):
        row = stored[ObjectId(case["id"])]
        assert row["key"] == "openai/text-embedding-3-small/3" and row["dimensions"] == 3
        assert decode(row["vector"]).tolist() == np.float32(vector).tolist()
        assert row["vector"].as_vector().data == pytest.approx(vector)  # pymongo reads our format too
        state = client.get(f"/api/testcases/{case['id']}/full", headers=headers).json["data"]["embedding"]
        assert state["status"] == "embedded" and state["key"] == "openai/text-embedding-3-small/3"
    assert embed_due(rag_app) == 0 and len(fake_openai.requests) == 1


def test_rag_ranks_saved_cases_by_cosine_and_shares_the_generations_request_id(rag_app, fake_openai, dev):
    client, headers, _ = dev
    embedded(rag_app, fake_openai, dev)
    fake_openai.reply(openai_embeddings([[2.0, 0.0, 0.0]], 5))
    fake_openai.reply(chat_completion(cases_json(1), 100, 20))
    body = {"prompt": "Password reset flow", "context": "email", "count": 1, "useRAG": True,
            "ragSimilarityThreshold": 0.5, "maxRAGReferences": 3}
    response = client.post("/api/test-generation", json=body, headers={**headers, "X-Request-ID": "req-rag-1"})
    assert response.status_code == 200, response.json
    data = response.json["data"]
    # cos([2,0,0], [1,0,0]) = 1; with [0.6,0.8,0]: 0.6; with [0,0,1]: 0 (below 0.5).
    assert [(r["title"], r["similarity"]) for r in data["references"]] == [(TITLES[0], 1.0), (TITLES[1], 0.6)]
    assert data["ragStatus"] == "searched"
    embed_request, chat_request = fake_openai.requests[1:]
    assert embed_request["json"]["input"] == ["Password reset flow\nemail"]
    prompt = chat_request["json"]["messages"][-1]["content"]
    assert TITLES[0] in prompt and TITLES[1] in prompt and TITLES[2] not in prompt

    records = ledger(rag_app, requestId="req-rag-1")
    assert [r["operation"] for r in records] == ["embedding", "test_generation"]
    assert records[0]["promptTokens"] == 5 and records[0]["httpStatus"] == 200
    assert Decimal(str(records[0]["cost"])) == 5 * EMBEDDING_PER_TOKEN
    # The request's full cost is the sum of its records: gpt-4o-mini $0.15 / $0.60 per million.
    total = sum(Decimal(str(r["cost"])) for r in records)
    assert total == 5 * EMBEDDING_PER_TOKEN + (100 * Decimal("0.15") + 20 * Decimal("0.60")) / 10**6

    fake_openai.reply(openai_embeddings([[1.0, 0.0, 0.0]], 5))
    fake_openai.reply(chat_completion(cases_json(1), 100, 20))
    capped = client.post("/api/test-generation", json={**body, "maxRAGReferences": 1}, headers=headers).json["data"]
    assert [r["title"] for r in capped["references"]] == [TITLES[0]]


def test_without_rag_no_embedding_call_is_made_and_an_estimate_makes_none(rag_app, fake_openai, dev):
    client, headers, _ = dev
    embedded(rag_app, fake_openai, dev)
    fake_openai.reply(chat_completion(cases_json(1), 100, 20))
    plain = client.post("/api/test-generation", json={"prompt": "Password reset", "count": 1}, headers=headers)
    assert plain.json["data"]["ragStatus"] == "off" and plain.json["data"]["references"] == []
    estimate = client.post("/api/estimate-tokens", json={"prompt": "Password reset", "useRAG": True}, headers=headers)
    assert estimate.json["data"]["ragStatus"] == "not_searched" and "not searched" in estimate.json["data"]["note"]
    assert len(fake_openai.requests) == 2  # the cases' embedding and the plain generation
    assert [r["operation"] for r in ledger(rag_app)] == ["embedding", "test_generation"]


def test_budgets_bind_embedding_calls(rag_app, fake_openai, dev, make_app):
    client, headers, user = dev
    create_user(rag_app, "boss@example.com", role="admin")
    admin = bearer(client, "boss@example.com")
    cases = save_cases(client, headers)
    # 12 tokens a day: less than the three titles (13 tokens by tiktoken's cl100k_base, as reserved).
    reserved = sum(len(tiktoken.get_encoding("cl100k_base").encode(t)) for t in TITLES)
    assert reserved == 13
    assert client.put(f"/admin/openai/budgets/{user['_id']}", json={"tokensPerDay": 12},
                      headers=admin).status_code == 200
    assert embed_due(rag_app) == 0
    assert fake_openai.requests == [] and ledger(rag_app) == []
    state = client.get(f"/api/testcases/{cases[0]['id']}/full", headers=headers).json["data"]["embedding"]
    assert state["status"] == "pending" and "day budget" in state["lastError"] and state["attempts"] == 1
    # Tried again when the day's budget resets (the 429's Retry-After), not before.
    stored = get_db(rag_app).testcases.find_one({"_id": ObjectId(cases[0]["id"])})["embedding"]
    assert stored["nextAttemptAt"].replace(tzinfo=None) == utc(2026, 12, 2).replace(tzinfo=None)

    # A RAG generation whose query embedding does not fit is refused before anything is billed.
    response = client.post("/api/test-generation", headers=headers, json={
        "prompt": "Password reset flow and every other account recovery path " * 3, "count": 1, "useRAG": True})
    assert response.status_code == 429 and fake_openai.requests == []

    # Within the budget, the embedding reserves and settles like a generation: the counter equals the ledger.
    client.put(f"/admin/openai/budgets/{user['_id']}", json={"tokensPerDay": 1000}, headers=admin)
    rag_app.config["CLOCK"].at += timedelta(days=1)
    fake_openai.reply(openai_embeddings(VECTORS, 15))
    assert embed_due(rag_app) == 3
    usage = client.get("/api/me/usage", headers=headers).json["data"]["windows"]
    day = next(w for w in usage if w["window"] == "day")
    assert day["used"]["tokens"] == 15
    counter = get_db(rag_app).budget_counters.find_one({"window": "day", "period": "2026-12-02"})
    assert counter["tokens"] == 15 == sum(r["totalTokens"] for r in ledger(rag_app))


def test_a_provider_outage_fails_neither_a_save_nor_a_generation_and_embeddings_catch_up(
        rag_app, fake_openai, dev, clock):
    client, headers, _ = dev
    cases = save_cases(client, headers)
    outage = httpx2.Response(503, json={"error": {"message": "The server is overloaded", "type": "server_error"}})
    fake_openai.reply(outage)
    assert embed_due(rag_app) == 0
    state = client.get(f"/api/testcases/{cases[0]['id']}/full", headers=headers).json["data"]["embedding"]
    assert state["status"] == "pending" and state["attempts"] == 1 and "503" in state["lastError"]

    fake_openai.reply(outage)
    fake_openai.reply(chat_completion(cases_json(1), 100, 20))
    body = {"prompt": "Password reset flow", "count": 1, "useRAG": True, "ragSimilarityThreshold": 0.5}
    response = client.post("/api/test-generation", json=body, headers=headers)
    assert response.status_code == 200
    assert response.json["data"]["ragStatus"] == "unavailable" and response.json["data"]["references"] == []
    # A refused embedding call billed nothing: only the generation is in the ledger.
    assert [r["operation"] for r in ledger(rag_app)] == ["test_generation"]

    assert embed_due(rag_app) == 0  # not due yet: the next attempt is 30 s after the failure
    assert len(fake_openai.requests) == 3
    clock.at += timedelta(seconds=30)
    fake_openai.reply(openai_embeddings(VECTORS, 37))
    assert embed_due(rag_app) == 3

    fake_openai.reply(openai_embeddings([[1.0, 0.0, 0.0]], 5))
    fake_openai.reply(chat_completion(cases_json(1), 100, 20))
    caught_up = client.post("/api/test-generation", json=body, headers=headers).json["data"]
    assert caught_up["ragStatus"] == "searched"
    assert [r["title"] for r in caught_up["references"]] == list(TITLES[:2])


def test_an_embedding_call_that_timed_out_is_recorded_as_an_estimate(rag_app, fake_openai, dev):
    client, headers, _ = dev
    save_cases(client, headers)
    fake_openai.reply(httpx2.ReadTimeout("read timed out"))
    assert embed_due(rag_app) == 0
    [record] = ledger(rag_app)
    counted = sum(len(tiktoken.get_encoding("cl100k_base").encode(title)) for title in TITLES)
    assert record["operation"] == "embedding" and record["outcome"] == "timeout" and record["estimated"] is True
    assert (record["promptTokens"], record["completionTokens"]) == (counted, 0)
    assert Decimal(str(record["cost"])) == counted * EMBEDDING_PER_TOKEN


def test_an_unreadable_embedding_reply_is_recorded_with_its_reported_usage(rag_app, fake_openai, dev):
    client, headers, _ = dev
    save_cases(client, headers)
    fake_openai.reply(openai_embeddings(VECTORS[:2], 37))  # two vectors for three texts
    assert embed_due(rag_app) == 0
    [record] = ledger(rag_app)
    assert record["outcome"] == "unreadable" and record["promptTokens"] == 37 and record["estimated"] is False


def test_an_edit_of_the_text_embeds_the_case_again_and_other_edits_do_not(rag_app, fake_openai, dev, clock):
    client, headers, _ = dev
    cases = embedded(rag_app, fake_openai, dev)
    url = f"/api/testcases/{cases[0]['id']}"
    assert client.patch(url, json={"priority": "high"}, headers=headers).json["data"]["embedding"]["status"] == "embedded"
    edited = client.patch(url, json={"title": "Password reset via SMS"}, headers=headers).json["data"]
    assert edited["embedding"]["status"] == "pending"
    fake_openai.reply(openai_embeddings([[0.0, 1.0, 0.0]], 6))
    assert embed_due(rag_app) == 1
    assert fake_openai.requests[-1]["json"]["input"] == ["Password reset via SMS"]
    row = get_db(rag_app).testcase_embeddings.find_one({"_id": ObjectId(cases[0]["id"])})
    assert decode(row["vector"]).tolist() == [0.0, 1.0, 0.0]

    fake_openai.reply(openai_embeddings([[0.0, 1.0, 0.0]], 5))
    fake_openai.reply(chat_completion(cases_json(1), 100, 20))
    found = client.post("/api/test-generation", headers=headers, json={
        "prompt": "Reset by SMS", "count": 1, "useRAG": True, "ragSimilarityThreshold": 0.7}).json["data"]
    # The same process's pool took the new vector at once: [0,1,0] now, and 0.8 for the second case.
    assert [(r["title"], r["similarity"]) for r in found["references"]] == [
        ("Password reset via SMS", 1.0), (TITLES[1], 0.8)]


def test_vectors_of_another_model_are_never_compared(rag_app, fake_openai, dev, make_app):
    client, headers, _ = dev
    embedded(rag_app, fake_openai, dev)
    other = FakeLLMServer()
    large = make_app(LLM_PROVIDER="openai", OPENAI_API_KEY="sk-test", LLM_MAX_RETRIES=0,
                     EMBEDDING_MODEL="text-embedding-3-large", LLM_TRANSPORTS={"openai": other.transport},
                     MONGO_CLIENT=get_db(rag_app).client, JWT_SECRET_KEY=rag_app.config["JWT_SECRET_KEY"])
    other.reply(openai_embeddings([[1.0, 0.0, 0.0]], 5, model="text-embedding-3-large"))
    other.reply(chat_completion(cases_json(1), 100, 20))
    response = large.test_client().post("/api/test-generation", headers=headers, json={
        "prompt": "Password reset", "count": 1, "useRAG": True, "ragSimilarityThreshold": 0.0})
    assert response.json["data"]["ragStatus"] == "searched" and response.json["data"]["references"] == []
    assert other.requests[0]["json"]["model"] == "text-embedding-3-large"


def test_a_deleted_case_is_never_a_reference_even_in_another_processs_pool(rag_app, fake_openai, dev, make_app):
    client, headers, _ = dev
    cases = embedded(rag_app, fake_openai, dev)
    other = FakeLLMServer()
    second = make_app(LLM_PROVIDER="openai", OPENAI_API_KEY="sk-test", LLM_MAX_RETRIES=0,
                      LLM_TRANSPORTS={"openai": other.transport}, MONGO_CLIENT=get_db(rag_app).client,
                      JWT_SECRET_KEY=rag_app.config["JWT_SECRET_KEY"])
    body = {"prompt": "Password reset", "count": 1, "useRAG": True, "ragSimilarityThreshold": 0.5}
    for _ in range(2):
        other.reply(openai_embeddings([[1.0, 0.0, 0.0]], 5))
        other.reply(chat_completion(cases_json(1), 100, 20))
    first = second.test_client().post("/api/test-generation", json=body, headers=headers).json["data"]
    assert [r["title"] for r in first["references"]] == list(TITLES[:2])  # its pool is loaded now
    assert client.delete(f"/api/testcases/{cases[0]['id']}", headers=headers).status_code == 200
    assert get_db(rag_app).testcase_embeddings.count_documents({"_id": ObjectId(cases[0]["id"])}) == 0
    after = second.test_client().post("/api/test-generation", json=body, headers=headers).json["data"]
    assert [r["title"] for r in after["references"]] == [TITLES[1]]


def test_two_workers_embed_each_case_once(rag_app, fake_openai, dev, make_app):
    client, headers, _ = dev
    save_cases(client, headers, [f"Checkout step {n}" for n in range(10)])
    calls = []

    def handler(request):
        inputs = __import__("json").loads(request.content)["input"]
        calls.append(inputs)
        return httpx2.Response(200, json=openai_embeddings([[1.0, float(n), 0.0] for n in range(len(inputs))],
                                                           len(inputs)))

    workers = [make_app(LLM_PROVIDER="openai", OPENAI_API_KEY="sk-test", LLM_MAX_RETRIES=0, EMBEDDING_BATCH_SIZE=3,
                        LLM_TRANSPORTS={"openai": httpx2.MockTransport(handler)}, MONGO_CLIENT=get_db(rag_app).client)
               for _ in range(2)]
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(2) as pool:
        done = list(pool.map(embed_due, workers))
    assert sum(done) == 10
    sent = sorted(text for batch in calls for text in batch)
    assert sent == sorted(f"Checkout step {n}" for n in range(10))
    assert sum(r["promptTokens"] for r in ledger(rag_app)) == 10


def test_a_case_whose_owner_is_gone_is_skipped_not_billed(rag_app, fake_openai, dev):
    client, headers, user = dev
    cases = save_cases(client, headers)
    get_db(rag_app).users.delete_one({"_id": user["_id"]})
    assert embed_due(rag_app) == 0 and fake_openai.requests == []
    assert get_db(rag_app).testcases.find_one({"_id": ObjectId(cases[0]["id"])})["embedding"]["status"] == "skipped"


def test_the_pages_show_embeddings_as_their_own_type(rag_app, fake_openai, dev):
    client, headers, _ = dev
    embedded(rag_app, fake_openai, dev)
    fake_openai.reply(chat_completion(cases_json(1), 100, 20))
    client.post("/api/test-generation", json={"prompt": "Password reset", "count": 1}, headers=headers)
    mine = client.get("/api/me/usage/breakdown", query_string={"by": "operation"}, headers=headers).json["data"]
    assert {row["key"]: row["totalTokens"] for row in mine} == {"embedding": 37, "test_generation": 120}
    history = client.get("/api/me/usage/history", query_string={"operation": "embedding"}, headers=headers).json
    assert [r["operation"] for r in history["data"]["data"]] == ["embedding"]
    create_user(rag_app, "boss@example.com", role="admin")
    admin = bearer(client, "boss@example.com")
    rows = client.get("/admin/openai/breakdown", query_string={"by": "operation"}, headers=admin).json["data"]
    assert {row["key"]: row["totalRequests"] for row in rows} == {"embedding": 1, "test_generation": 1}
    only = client.get("/admin/openai/usage", query_string={"operation": "embedding"}, headers=admin)
    assert only.status_code == 200
    script = (__import__("pathlib").Path(__file__).parents[2] / "backend/admin_ui/static/me.js").read_text()
    assert 'by: "operation"' in script


def test_demo_embeddings_work_offline_and_rank_shared_words_higher(app, client, user_headers):
    save_cases(client, user_headers)
    assert embed_due(app) == 3
    response = client.post("/api/test-generation", headers=user_headers, json={
        "prompt": "Password reset", "count": 1, "useRAG": True, "ragSimilarityThreshold": 0.3})
    references = response.json["data"]["references"]
    # Word hashing: "password reset" against 4 and 5 words sharing two: 2/sqrt(2*4), 2/sqrt(2*5).
    assert [(r["title"], r["similarity"]) for r in references] == [
        (TITLES[1], round(2 / np.sqrt(8), 4)), (TITLES[0], round(2 / np.sqrt(10), 4))]
    record = ledger(app, operation="embedding")[0]
    assert record["provider"] == "demo" and record["cost"] == 0.0 and record["demo"] is True


def test_saved_cases_are_billed_to_their_owner_as_they_are_when_embedded(rag_app, fake_openai, dev):
    client, headers, user = dev
    create_user(rag_app, "boss@example.com", role="admin")
    admin = bearer(client, "boss@example.com")
    save_cases(client, headers, TITLES[:1])
    # Moved to another organization (and team) after saving, before the background embedding.
    org = client.post("/admin/orgs", json={"name": "Acme"}, headers=admin).json["data"]["id"]
    team = client.post(f"/admin/orgs/{org}/teams", json={"name": "QA"}, headers=admin).json["data"]["id"]
    assert client.post(f"/admin/orgs/{org}/members", json={"email": "dev@example.com", "role": "member",
                                                          "teamId": team}, headers=admin).status_code == 201
    fake_openai.reply(openai_embeddings([VECTORS[0]], 7))
    assert embed_due(rag_app) == 1
    [record] = ledger(rag_app)
    assert (str(record["orgId"]), str(record["teamId"]), record["apiKeyId"]) == (org, team, None)

    # A deactivated owner's cases are not embedded (nor billed).
    save_cases(client, headers, TITLES[1:2])
    get_db(rag_app).users.update_one({"_id": user["_id"]}, {"$set": {"isActive": False}})
    assert embed_due(rag_app) == 0 and len(fake_openai.requests) == 1
    assert get_db(rag_app).testcases.count_documents({"embedding.status": "skipped"}) == 1
