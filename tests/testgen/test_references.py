import math

from backend.testgen.references import rank
from tests.helpers import bearer, cases_json, chat_completion, create_user


def test_tfidf_cosine_by_hand():
    login = {"_id": 1, "title": "login password reset"}
    upload = {"_id": 2, "title": "upload file"}
    # 3 documents; "login" and "password" appear in 2, "reset" in 1.
    shared = math.log(4 / 3) + 1
    rare = math.log(4 / 2) + 1
    expected = math.sqrt(2) * shared / math.sqrt(2 * shared ** 2 + rare ** 2)
    assert rank("Login password", [login, upload], limit=3, threshold=0.0) == [
        (login, round(expected, 4)), (upload, 0.0)]
    assert rank("Login password", [login, upload], limit=3, threshold=0.5) == [(login, round(expected, 4))]
    assert rank("Login password", [login, upload], limit=0, threshold=0.0) == []


def test_use_rag_puts_similar_saved_cases_in_the_prompt(openai_app, fake_openai):
    from tests.helpers import cases_json, chat_completion

    client = openai_app.test_client()
    create_user(openai_app, "dev@example.com")
    headers = bearer(client, "dev@example.com")
    for title in ("Password reset email is sent", "Password reset link expires", "Upload a profile picture"):
        client.post("/api/testcases", json={"title": title, "steps": ["Request a password reset"] if "reset" in title else []},
                    headers=headers)
    body = {"prompt": "Password reset flow", "useRAG": True, "ragSimilarityThreshold": 0.2, "maxRAGReferences": 5}
    fake_openai.reply(chat_completion(cases_json(1), 10, 10))
    response = client.post("/api/test-generation", json={**body, "count": 1}, headers=headers)
    references = response.json["data"]["references"]
    assert {r["title"] for r in references} == {"Password reset email is sent", "Password reset link expires"}
    assert all(r["similarity"] >= 0.2 for r in references)
    prompt = fake_openai.requests[0]["json"]["messages"][1]["content"]
    assert "Password reset email is sent" in prompt and "Upload a profile picture" not in prompt

    with_rag = client.post("/api/estimate-tokens", json=body, headers=headers).json["data"]
    without = client.post("/api/estimate-tokens", json={**body, "useRAG": False}, headers=headers).json["data"]
    assert with_rag["estimatedInputTokens"] > without["estimatedInputTokens"]
    assert len(with_rag["references"]) == 2 and without["references"] == []


def test_references_come_only_from_the_callers_own_cases(app, client):
    create_user(app, "ann@example.com")
    create_user(app, "ben@example.com")
    ann, ben = bearer(client, "ann@example.com"), bearer(client, "ben@example.com")
    client.post("/api/testcases", json={"title": "Password reset email is sent"}, headers=ann)
    body = {"prompt": "Password reset email", "useRAG": True, "ragSimilarityThreshold": 0.1}
    assert client.post("/api/estimate-tokens", json=body, headers=ben).json["data"]["references"] == []
    assert len(client.post("/api/estimate-tokens", json=body, headers=ann).json["data"]["references"]) == 1


def test_huge_saved_cases_cannot_carry_a_prompt_past_its_caps(openai_app, fake_openai):
    client = openai_app.test_client()
    create_user(openai_app, "big@example.com")
    headers = bearer(client, "big@example.com")
    big = {"title": "Checkout " * 30, "description": "checkout " * 1_100, "steps": ["checkout payment " * 110] * 50,
           "expectedResult": "paid " * 2_000}
    assert client.post("/api/testcases", json={**big, "steps": ["x"] * 51}, headers=headers).status_code == 422
    for _ in range(10):
        assert client.post("/api/testcases", json=big, headers=headers).status_code == 201
    fake_openai.reply(chat_completion(cases_json(1), 10, 10))
    response = client.post("/api/test-generation", headers=headers, json={
        "prompt": "checkout payment", "count": 1, "useRAG": True, "maxRAGReferences": 10,
        "ragSimilarityThreshold": 0})
    assert response.status_code == 200 and len(response.json["data"]["references"]) == 10
    sent = fake_openai.requests[0]["json"]["messages"][-1]["content"]
    # Ten references of at most 2,000 characters each, plus the instructions around them.
    assert len(sent) <= 10 * 2_000 + 10 * 1 + 300
