"""Acceptance: each provider's reported usage lands in the ledger call for call, plain and streamed,
priced at the published rates (cached input at the cached rate, cache writes at the write rate)."""
from decimal import Decimal

import pytest

from backend.db import USAGE, get_db
from tests.helpers import (
    anthropic_message,
    anthropic_stream,
    bearer,
    cases_json,
    chat_completion,
    create_user,
    gemini_response,
    gemini_stream,
    ollama_chat,
    ollama_stream,
    openai_stream,
    read_events,
)

TEXT = cases_json(2)


def usd(*terms):
    return float(round(sum(Decimal(t) * Decimal(str(rate)) for t, rate in terms) / 1_000_000, 10))


# provider, model, plain reply, streamed reply,
# expected ledger (promptTokens, cachedInputTokens, cacheWriteTokens, completionTokens, reasoningTokens), cost
CASES = [
    ("openai", "gpt-4o-mini",
     lambda: chat_completion(TEXT, 1234, 567, cached=1024, reasoning=64),
     lambda: openai_stream(TEXT, 1234, 567, cached=1024),
     (1234, 1024, 0, 567), usd((210, 0.15), (1024, 0.075), (567, 0.60))),
    # OpenAI's cache writes (prompt_tokens_details.cache_write_tokens), at genai-prices' write rate:
    # gpt-6-cyber $20 input, $2 cached input, $25 cache write, $100 output per million tokens.
    ("openai", "gpt-6-cyber",
     lambda: chat_completion(TEXT, 1000, 100, cached=200, cache_write=300, model="gpt-6-cyber"),
     lambda: openai_stream(TEXT, 1000, 100, cached=200, cache_write=300, model="gpt-6-cyber"),
     (1000, 200, 300, 100), usd((500, 20), (200, 2), (300, 25), (100, 100))),
    ("gemini", "gemini-2.0-flash",
     lambda: gemini_response(TEXT, 5000, 700, cached=4096, thoughts=0),
     lambda: gemini_stream(TEXT, 5000, 700, cached=4096),
     (5000, 4096, 0, 700), usd((904, 0.10), (4096, 0.025), (700, 0.40))),
    ("anthropic", "claude-3-5-haiku-20241022",
     lambda: anthropic_message(TEXT, 300, 450, cache_read=2048, cache_write=512),
     lambda: anthropic_stream(TEXT, 300, 450, cache_read=2048, cache_write=512),
     (2860, 2048, 512, 450), usd((300, 0.80), (2048, 0.08), (512, 1.00), (450, 4.00))),
    ("ollama", "llama3.2",
     lambda: ollama_chat(TEXT, 87, 412),
     lambda: ollama_stream(TEXT, 87, 412),
     (87, 0, 0, 412), 0.0),
]


def ledger(app):
    with app.app_context():
        return list(get_db()[USAGE].find().sort("timestamp", 1))


@pytest.mark.filterwarnings("ignore:The model 'claude-3-5-haiku:DeprecationWarning")
@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
@pytest.mark.parametrize("provider, model, plain, streamed, tokens, cost", CASES, ids=[c[0] for c in CASES])
def test_ledger_equals_what_each_provider_reported(multi_app, fakes, provider, model, plain, streamed,
                                                   tokens, cost, stream):
    client = multi_app.test_client()
    create_user(multi_app, "dev@example.com")
    fakes[provider].reply(streamed() if stream else plain())
    response = client.post("/api/test-generation",
                           json={"prompt": "Login", "count": 2, "provider": provider, "model": model, "stream": stream},
                           headers=bearer(client, "dev@example.com"))
    assert response.status_code == 200
    if stream:
        events = read_events(response)
        assert events[-1][0] == "done"
        assert "".join(data["text"] for name, data in events if name == "delta") == TEXT
        usage = events[-1][1]["data"]["usage"]
        assert len(events[-1][1]["data"]["testCases"]) == 2
    else:
        usage = response.json["data"]["usage"]
    records = ledger(multi_app)
    assert len(records) == 1
    record = records[0]
    prompt, cached, cache_write, completion = tokens
    assert (record["promptTokens"], record["cachedInputTokens"], record["cacheWriteTokens"],
            record["completionTokens"]) == tokens
    assert record["totalTokens"] == prompt + completion
    assert record["cost"] == usage["cost"] == cost
    assert (record["provider"], record["modelName"], usage["provider"]) == (provider, model, provider)
    assert record["priced"] is (provider != "ollama")


def test_local_models_cost_nothing_and_say_so(multi_app, fakes):
    client = multi_app.test_client()
    create_user(multi_app, "dev@example.com")
    fakes["ollama"].reply(ollama_chat(TEXT, 10, 20))
    client.post("/api/test-generation", json={"prompt": "x", "count": 2, "provider": "ollama"},
                headers=bearer(client, "dev@example.com"))
    record = ledger(multi_app)[0]
    assert (record["cost"], record["priced"]) == (0.0, False)
    assert record["price"]["source"] == "local model (ollama): no spend"


def test_ollama_without_prompt_count_records_zero_and_flags_it(multi_app, fakes):
    client = multi_app.test_client()
    create_user(multi_app, "dev@example.com")
    fakes["ollama"].reply(ollama_chat(TEXT, None, 20))
    response = client.post("/api/test-generation", json={"prompt": "x", "count": 2, "provider": "ollama"},
                           headers=bearer(client, "dev@example.com"))
    assert response.json["data"]["usage"]["usageReported"] is False
    record = ledger(multi_app)[0]
    assert (record["promptTokens"], record["completionTokens"], record["usageReported"]) == (0, 20, False)


def test_an_unconfigured_provider_is_a_400(openai_app):
    client = openai_app.test_client()
    create_user(openai_app, "dev@example.com")
    response = client.post("/api/test-generation", json={"prompt": "x", "provider": "gemini"},
                           headers=bearer(client, "dev@example.com"))
    assert response.status_code == 400
    assert response.json["message"] == "Provider 'gemini' is not configured on this server (available: openai)"
    assert "provider" in response.json["errors"]


def test_include_token_usage_false_omits_usage_but_still_records(client, user_headers, db):
    response = client.post("/api/test-generation", json={"prompt": "x", "count": 1, "includeTokenUsage": False},
                           headers=user_headers)
    assert response.status_code == 200
    assert "usage" not in response.json["data"]
    assert db[USAGE].count_documents({}) == 1


def test_each_call_logs_the_seed_usage_line(client, user_headers, caplog):
    import logging

    with caplog.at_level(logging.INFO, logger="backend.llm"):
        client.post("/api/test-generation", json={"prompt": "x", "count": 1}, headers=user_headers)
    record = [r for r in caplog.records if r.getMessage().startswith("Token usage - ")][0]
    message = record.getMessage()
    assert message.startswith("Token usage - Prompt: ") and "Candidates: " in message and "Total: " in message
    assert message.endswith("(provider=demo, model=demo)")
