import logging
from datetime import datetime, timezone

import pytest

from backend.llm.base import TokenUsage
from backend.pricing.services import price_call

NOW = datetime(2026, 11, 1, tzinfo=timezone.utc)


def test_gpt_4o_mini_uses_published_rates_with_cached_input_at_the_cached_rate():
    usage = TokenUsage(input_tokens=1200, cached_input_tokens=200, output_tokens=300)
    price = price_call("openai", ["gpt-4o-mini-2024-07-18", "gpt-4o-mini"], usage, NOW)
    # $0.15/M for 1,000 uncached, $0.075/M for 200 cached, $0.60/M for 300 output.
    assert price.cost == pytest.approx((1000 * 0.15 + 200 * 0.075 + 300 * 0.60) / 1_000_000, abs=1e-15)
    assert price.cost == 0.000345
    assert (price.input_per_1m, price.cached_input_per_1m, price.output_per_1m) == (0.15, 0.075, 0.6)
    assert price.priced is True
    assert price.source.startswith("genai-prices ") and price.source.endswith("openai/gpt-4o-mini")


def test_reasoning_tokens_are_output_tokens_priced_once():
    plain = price_call("openai", ["gpt-4o-mini"], TokenUsage(input_tokens=10, output_tokens=100), NOW)
    with_reasoning = price_call(
        "openai", ["gpt-4o-mini"], TokenUsage(input_tokens=10, output_tokens=100, reasoning_tokens=60), NOW
    )
    assert plain.cost == with_reasoning.cost == (10 * 0.15 + 100 * 0.60) / 1_000_000


def test_an_unknown_model_costs_zero_unpriced_with_a_warning(caplog):
    with caplog.at_level(logging.WARNING):
        price = price_call("openai", ["my-local-llama"], TokenUsage(input_tokens=10, output_tokens=5), NOW)
    assert (price.cost, price.priced) == (0.0, False)
    assert "No price known for openai model my-local-llama" in caplog.text


def test_the_demo_provider_costs_nothing():
    price = price_call(None, ["demo"], TokenUsage(input_tokens=10, output_tokens=5), NOW)
    assert (price.cost, price.priced, price.source) == (0.0, False, "demo provider: no spend")


def test_usage_invariants_are_enforced():
    with pytest.raises(ValueError):
        TokenUsage(input_tokens=5, cached_input_tokens=6)
    with pytest.raises(ValueError):
        TokenUsage(output_tokens=5, reasoning_tokens=6)
    assert TokenUsage(input_tokens=7, output_tokens=5).total_tokens == 12
