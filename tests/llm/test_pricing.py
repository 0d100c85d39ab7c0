import logging
from datetime import datetime, timezone
from decimal import Decimal

import pytest

from backend.llm.anthropic_provider import AnthropicProvider
from backend.llm.base import TokenUsage
from backend.llm.demo_provider import DemoProvider
from backend.llm.gemini_provider import GeminiProvider
from backend.llm.ollama_provider import OllamaProvider
from backend.llm.openai_provider import OpenAIProvider
from backend.pricing.services import price_call, price_sheet

NOW = datetime(2026, 11, 1, tzinfo=timezone.utc)


def per_million(*terms):
    """Exact sum of tokens x USD-per-million pairs, as a float rounded like the ledger."""
    return float(round(sum(Decimal(t) * Decimal(str(r)) for t, r in terms) / 1_000_000, 10))


def test_gpt_4o_mini_uses_published_rates_with_cached_input_at_the_cached_rate():
    usage = TokenUsage(input_tokens=1200, cached_input_tokens=200, output_tokens=300)
    price = price_call(OpenAIProvider, ["gpt-4o-mini-2024-07-18", "gpt-4o-mini"], usage, NOW, {})
    # $0.15/M for 1,000 uncached, $0.075/M for 200 cached, $0.60/M for 300 output.
    assert price.cost == per_million((1000, 0.15), (200, 0.075), (300, 0.60)) == 0.000345
    rates = price.rates
    assert (rates.input_per_1m, rates.cached_input_per_1m, rates.output_per_1m) == (0.15, 0.075, 0.6)
    assert price.priced is True
    assert rates.source.startswith("genai-prices ") and rates.source.endswith("openai/gpt-4o-mini")


def test_gemini_2_0_flash_published_rates():
    usage = TokenUsage(input_tokens=10_000, cached_input_tokens=4_000, output_tokens=2_000)
    price = price_call(GeminiProvider, ["gemini-2.0-flash"], usage, NOW, {})
    assert price.cost == per_million((6_000, 0.10), (4_000, 0.025), (2_000, 0.40))


def test_claude_3_5_haiku_published_rates_with_cache_reads_and_writes():
    usage = TokenUsage(input_tokens=3_125, cached_input_tokens=2_000, cache_write_tokens=100, output_tokens=500)
    price = price_call(AnthropicProvider, ["claude-3-5-haiku-20241022"], usage, NOW, {})
    # $0.80 input, $0.08 cache read, $1.00 cache write, $4.00 output per million.
    assert price.cost == per_million((1_025, 0.80), (2_000, 0.08), (100, 1.00), (500, 4.00))


def test_reasoning_tokens_are_output_tokens_priced_once():
    plain = price_call(OpenAIProvider, ["gpt-4o-mini"], TokenUsage(input_tokens=10, output_tokens=100), NOW, {})
    with_reasoning = price_call(
        OpenAIProvider, ["gpt-4o-mini"], TokenUsage(input_tokens=10, output_tokens=100, reasoning_tokens=60), NOW, {}
    )
    assert plain.cost == with_reasoning.cost == per_million((10, 0.15), (100, 0.60))


def test_an_unknown_model_costs_zero_unpriced_with_a_warning(caplog):
    with caplog.at_level(logging.WARNING):
        price = price_call(OpenAIProvider, ["my-local-llama"], TokenUsage(input_tokens=10, output_tokens=5), NOW, {})
    assert (price.cost, price.priced) == (0.0, False)
    assert "No price known for openai model my-local-llama" in caplog.text


def test_free_providers_say_why():
    usage = TokenUsage(input_tokens=10, output_tokens=5)
    for provider, reason in ((DemoProvider, "demo provider: no spend"), (OllamaProvider, "local model (ollama): no spend")):
        price = price_call(provider, ["llama3.2"], usage, NOW, {})
        assert (price.cost, price.priced, price.rates.source) == (0.0, False, reason)


def test_pricing_file_overrides_come_first_and_price_exactly():
    overrides = {("openai", "my-local-llama"): {"inputPer1M": Decimal("0.2"), "cachedInputPer1M": Decimal("0.05"),
                                                "outputPer1M": Decimal("0.8")},
                 ("ollama", "llama3.2"): {"inputPer1M": Decimal("0.01"), "outputPer1M": Decimal("0.02")}}
    usage = TokenUsage(input_tokens=1_000, cached_input_tokens=400, output_tokens=250)
    price = price_call(OpenAIProvider, ["my-local-llama"], usage, NOW, overrides)
    assert price.cost == per_million((600, 0.2), (400, 0.05), (250, 0.8))
    assert price.priced and price.rates.source == "PRICING_FILE: openai/my-local-llama"
    local = price_call(OllamaProvider, ["llama3.2"], usage, NOW, overrides)
    assert local.cost == per_million((1_000, 0.01), (250, 0.02))


def test_price_sheets_report_the_context_window_and_unknown_models():
    sheet = price_sheet(OpenAIProvider, ["gpt-4o-mini"], NOW, {})
    rates = sheet.rates_at(0)
    assert (rates.input_per_1m, rates.output_per_1m, sheet.context_window) == (0.15, 0.6, 128000)
    assert price_sheet(OpenAIProvider, ["nope-model"], NOW, {}).priced is False


def test_a_tiered_model_is_priced_at_the_tier_its_own_input_selects():
    # gemini-2.5-pro: $1.25 input / $10 output per million up to 200k input tokens, $2.50 / $15 above.
    below = price_call(GeminiProvider, ["gemini-2.5-pro"], TokenUsage(input_tokens=200_000, output_tokens=1_000), NOW, {})
    above = price_call(GeminiProvider, ["gemini-2.5-pro"], TokenUsage(input_tokens=200_001, output_tokens=1_000), NOW, {})
    assert below.cost == per_million((200_000, 1.25), (1_000, 10))
    assert above.cost == per_million((200_001, 2.5), (1_000, 15))
    assert (below.rates.input_per_1m, above.rates.input_per_1m) == (1.25, 2.5)


def test_a_reservation_is_priced_at_the_dearest_tier_its_worst_case_reaches():
    sheet = price_sheet(GeminiProvider, ["gemini-2.5-pro"], NOW, {})
    assert float(sheet.worst_cost(150_000, 4_096)) == per_million((150_000, 1.25), (4_096, 10))
    assert float(sheet.worst_cost(250_000, 4_096)) == per_million((250_000, 2.5), (4_096, 15))
    assert sheet.tiers()[0]["aboveInputTokens"] == 200_000 and sheet.tiers()[0]["inputPer1M"] == 2.5


def test_usage_invariants_are_enforced():
    with pytest.raises(ValueError):
        TokenUsage(input_tokens=5, cached_input_tokens=6)
    with pytest.raises(ValueError):
        TokenUsage(input_tokens=5, cached_input_tokens=3, cache_write_tokens=3)
    with pytest.raises(ValueError):
        TokenUsage(output_tokens=5, reasoning_tokens=6)
    assert TokenUsage(input_tokens=7, output_tokens=5).total_tokens == 12
