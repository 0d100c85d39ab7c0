import math

import tiktoken

from backend.testgen.prompts import build_messages
from tests.helpers import bearer, create_user


def tiktoken_chat_count(messages, encoding="o200k_base"):
    """OpenAI's chat accounting: 3 tokens per message, its role and content, and 3 to prime the reply."""
    enc = tiktoken.get_encoding(encoding)
    return 3 + sum(3 + len(enc.encode(m["role"])) + len(enc.encode(m["content"])) for m in messages)


def test_estimate_for_an_openai_model_equals_tiktoken(openai_app):
    client = openai_app.test_client()
    create_user(openai_app, "dev@example.com")
    body = {"prompt": "Test login with invalid password", "context": "Web app with authentication", "count": 4}
    response = client.post("/api/estimate-tokens", json=body, headers=bearer(client, "dev@example.com"))
    assert response.status_code == 200
    data = response.json["data"]
    expected = tiktoken_chat_count(build_messages(body["prompt"], 4, context=body["context"]))
    assert data["estimatedInputTokens"] == expected
    assert data["estimatedCostUsd"] == round(expected * 0.15 / 1_000_000, 10)
    assert (data["modelName"], data["provider"]) == ("gpt-4o-mini", "openai")
    assert data["method"] == "tiktoken o200k_base (exact for OpenAI chat models)"
    assert data["note"].startswith("Input only")


def test_estimate_for_an_older_openai_model_uses_its_own_encoding(openai_app):
    client = openai_app.test_client()
    create_user(openai_app, "dev@example.com")
    response = client.post("/api/estimate-tokens", json={"prompt": "Checkout flow", "model": "gpt-4"},
                           headers=bearer(client, "dev@example.com"))
    expected = tiktoken_chat_count(build_messages("Checkout flow", 5), "cl100k_base")
    assert response.json["data"]["estimatedInputTokens"] == expected
    assert response.json["data"]["method"].startswith("tiktoken cl100k_base")


def test_estimate_for_other_providers_is_a_documented_approximation(multi_app):
    client = multi_app.test_client()
    create_user(multi_app, "dev@example.com")
    response = client.post("/api/estimate-tokens",
                           json={"prompt": "Checkout flow", "provider": "gemini", "model": "gemini-2.0-flash"},
                           headers=bearer(client, "dev@example.com"))
    data = response.json["data"]
    characters = sum(len(m["content"]) for m in build_messages("Checkout flow", 5))
    assert data["estimatedInputTokens"] == math.ceil(characters / 4)
    assert data["estimatedCostUsd"] == round(math.ceil(characters / 4) * 0.10 / 1_000_000, 10)
    assert data["method"] == "approximation: ~4 characters per token"


def test_estimate_validates_and_needs_a_token(client, user_headers):
    assert client.post("/api/estimate-tokens", json={"prompt": "x"}).status_code == 401
    response = client.post("/api/estimate-tokens", json={"prompt": "x", "maxRAGReferences": 11}, headers=user_headers)
    assert response.status_code == 422 and "maxRAGReferences" in response.json["errors"]
    response = client.post("/api/estimate-tokens", json={"prompt": "x", "ragSimilarityThreshold": 1.5},
                           headers=user_headers)
    assert response.status_code == 422 and "ragSimilarityThreshold" in response.json["errors"]


def test_token_info_comes_from_the_price_table(multi_app):
    client = multi_app.test_client()
    create_user(multi_app, "dev@example.com")
    headers = bearer(client, "dev@example.com")
    info = client.get("/api/token-info", headers=headers).json["data"]
    assert (info["model"], info["provider"]) == ("gpt-4o-mini", "openai")
    assert info["pricing"] == {"inputPer1M": 0.15, "cachedInputPer1M": 0.075, "cacheWritePer1M": 0.15,
                               "outputPer1M": 0.6, "tiers": [], "currency": "USD",
                               "source": info["pricing"]["source"]}
    assert info["pricing"]["source"].endswith("openai/gpt-4o-mini")
    assert info["limits"] == {"maxInputTokens": 128000, "maxOutputTokens": 4096}
    gemini = client.get("/api/token-info", query_string={"provider": "gemini", "model": "gemini-2.0-flash"},
                        headers=headers).json["data"]
    assert (gemini["pricing"]["inputPer1M"], gemini["pricing"]["cachedInputPer1M"],
            gemini["pricing"]["outputPer1M"]) == (0.1, 0.025, 0.4)
    tiered = client.get("/api/token-info", query_string={"provider": "gemini", "model": "gemini-2.5-pro"},
                        headers=headers).json["data"]["pricing"]
    assert (tiered["inputPer1M"], tiered["outputPer1M"]) == (1.25, 10.0)
    assert [(t["aboveInputTokens"], t["inputPer1M"], t["outputPer1M"]) for t in tiered["tiers"]] == [(200000, 2.5, 15.0)]
    refused = client.get("/api/token-info", query_string={"model": "my-finetune"}, headers=headers)
    assert refused.status_code == 422 and "OPENAI_ALLOWED_MODELS" in refused.json["message"]
    multi_app.config["LLM_ALLOWED_MODELS"] = {**multi_app.config["LLM_ALLOWED_MODELS"], "openai": "*"}
    unknown = client.get("/api/token-info", query_string={"model": "my-finetune"}, headers=headers).json["data"]
    assert unknown["pricing"]["inputPer1M"] is None and unknown["pricing"]["source"] == "not in the price table"
    assert client.get("/api/token-info", query_string={"provider": "cohere"}, headers=headers).status_code == 400
