"""Every model of the installed price table, walked through pricing, estimate-tokens and token-info.

genai-prices' own calc_price is the independent oracle for each cost."""
from datetime import datetime, timezone

import pytest
from genai_prices import Usage, calc_price
from genai_prices.data_snapshot import get_snapshot

from backend.llm.anthropic_provider import AnthropicProvider
from backend.llm.base import TokenUsage
from backend.llm.gemini_provider import GeminiProvider
from backend.llm.openai_provider import OpenAIProvider
from backend.pricing.services import price_call
from tests.helpers import bearer, create_user

NOW = datetime(2026, 11, 1, tzinfo=timezone.utc)
PROVIDERS = {"openai": OpenAIProvider, "google": GeminiProvider, "anthropic": AnthropicProvider}
PROVIDER_NAMES = {"openai": "openai", "google": "gemini", "anthropic": "anthropic"}


def table_models():
    """(table provider id, model id) of every model whose id resolves to itself."""
    models = []
    for provider in get_snapshot().providers:
        if provider.id in PROVIDERS:
            for model in provider.models:
                if model.is_match(model.id):
                    models.append((provider.id, model.id))
    return models


MODELS = table_models()
# Below and above every tier threshold in the table (the highest is 272k input tokens).
USAGES = [TokenUsage(input_tokens=1_000, cached_input_tokens=300, cache_write_tokens=50, output_tokens=700,
                     reasoning_tokens=100),
          TokenUsage(input_tokens=300_000, cached_input_tokens=20_000, cache_write_tokens=1_000, output_tokens=5_000)]


def test_the_table_has_tiered_models():
    assert len(MODELS) > 150
    assert ("google", "gemini-2.5-pro") in MODELS and ("openai", "gpt-5.4") in MODELS


@pytest.mark.parametrize("usage", USAGES, ids=["below-tiers", "above-tiers"])
def test_every_model_costs_what_genai_prices_computes(usage):
    for table_provider, model in MODELS:
        price = price_call(PROVIDERS[table_provider], [model], usage, NOW, {})
        oracle = calc_price(Usage(input_tokens=usage.input_tokens, cache_read_tokens=usage.cached_input_tokens,
                                  cache_write_tokens=usage.cache_write_tokens, output_tokens=usage.output_tokens),
                            model_ref=model, provider_id=table_provider, genai_request_timestamp=NOW)
        assert price.cost == float(round(oracle.total_price, 10)), (table_provider, model)
        assert price.priced


def test_every_model_works_on_estimate_and_token_info(make_app):
    app = make_app(LLM_PROVIDER="openai", LLM_PROVIDERS=["openai", "gemini", "anthropic"], OPENAI_API_KEY="sk-t",
                   GEMINI_API_KEY="g-t", ANTHROPIC_API_KEY="a-t", RATELIMIT_ENABLED=False)
    create_user(app, "walker@example.com")
    client = app.test_client()
    headers = bearer(client, "walker@example.com")
    for table_provider, model in MODELS:
        provider = PROVIDER_NAMES[table_provider]
        info = client.get(f"/api/token-info?provider={provider}&model={model}", headers=headers)
        assert info.status_code == 200, (provider, model, info.json)
        estimate = client.post("/api/estimate-tokens", json={"prompt": "Login with a password", "provider": provider,
                                                             "model": model}, headers=headers)
        assert estimate.status_code == 200, (provider, model, estimate.json)
        assert estimate.json["data"]["reservedTokens"] >= estimate.json["data"]["estimatedInputTokens"]
