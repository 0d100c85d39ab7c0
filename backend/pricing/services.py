"""Exact cost of a call: the PRICING_FILE overrides first, then the genai-prices table.

Input tokens include cache reads and cache writes; each part is charged at its own
rate (genai-prices does the same), so no token is priced twice.
"""
import logging
from dataclasses import dataclass
from decimal import Decimal
from importlib.metadata import version

from genai_prices import Usage, calc_price

log = logging.getLogger(__name__)

PRICE_TABLE = f"genai-prices {version('genai-prices')}"
MILLION = Decimal(1_000_000)
# Every per-million rate in the table has at most four decimals, so each call's
# cost is a whole number of 1e-10 USD; rounding there is exact, not an estimate.
COST_DECIMALS = 10


@dataclass(frozen=True)
class Rates:
    """USD per million tokens, and where they came from."""

    input_per_1m: float | None
    cached_input_per_1m: float | None
    cache_write_per_1m: float | None
    output_per_1m: float | None
    source: str
    context_window: int | None = None

    def as_record(self):
        return {
            "inputPer1M": self.input_per_1m,
            "cachedInputPer1M": self.cached_input_per_1m,
            "cacheWritePer1M": self.cache_write_per_1m,
            "outputPer1M": self.output_per_1m,
            "source": self.source,
        }


@dataclass(frozen=True)
class Price:
    cost: float
    priced: bool
    rates: Rates

    def as_record(self):
        return self.rates.as_record()


def _float(value):
    return None if value is None else float(value)


def _override(overrides, provider_name, model_names):
    for model in model_names:
        rates = overrides.get((provider_name, model))
        if rates is not None:
            return model, rates
    return None, None


def _override_cost(rates, usage):
    input_rate = rates["inputPer1M"]
    cached_rate = rates.get("cachedInputPer1M", input_rate)
    write_rate = rates.get("cacheWritePer1M", input_rate)
    uncached = usage.input_tokens - usage.cached_input_tokens - usage.cache_write_tokens
    total = (
        uncached * input_rate
        + usage.cached_input_tokens * cached_rate
        + usage.cache_write_tokens * write_rate
        + usage.output_tokens * rates["outputPer1M"]
    ) / MILLION
    return float(round(total, COST_DECIMALS))


def _override_rates(provider_name, model, rates):
    return Rates(
        input_per_1m=_float(rates["inputPer1M"]),
        cached_input_per_1m=_float(rates.get("cachedInputPer1M", rates["inputPer1M"])),
        cache_write_per_1m=_float(rates.get("cacheWritePer1M", rates["inputPer1M"])),
        output_per_1m=_float(rates["outputPer1M"]),
        source=f"PRICING_FILE: {provider_name}/{model}",
    )


def _table(price_provider, model_names, usage, at):
    for model in model_names:
        try:
            return calc_price(usage, model_ref=model, provider_id=price_provider, genai_request_timestamp=at)
        except LookupError:
            continue
    return None


def _table_rates(calculation):
    rates = calculation.model_price
    input_rate = rates.input_mtok
    return Rates(
        input_per_1m=_float(input_rate),
        cached_input_per_1m=_float(rates.cache_read_mtok if rates.cache_read_mtok is not None else input_rate),
        cache_write_per_1m=_float(rates.cache_write_mtok if rates.cache_write_mtok is not None else input_rate),
        output_per_1m=_float(rates.output_mtok),
        source=f"{PRICE_TABLE}: {calculation.provider.id}/{calculation.model.id}",
        context_window=calculation.model.context_window,
    )


def _free(provider):
    return Rates(0.0, 0.0, 0.0, 0.0, source=provider.free_reason)


def model_rates(provider, model, at, overrides):
    """The rates a call to `model` would be charged at, or None when unknown."""
    override_model, rates = _override(overrides, provider.name, [model])
    if rates is not None:
        return _override_rates(provider.name, override_model, rates)
    if provider.price_provider is None:
        return _free(provider)
    calculation = _table(provider.price_provider, [model], Usage(input_tokens=0, output_tokens=0), at)
    return _table_rates(calculation) if calculation else None


def price_call(provider, model_names, usage, at, overrides):
    """Cost of one call; model_names are tried in order (server-reported name, then requested)."""
    model_names = list(dict.fromkeys(model_names))
    override_model, rates = _override(overrides, provider.name, model_names)
    if rates is not None:
        return Price(_override_cost(rates, usage), True, _override_rates(provider.name, override_model, rates))
    if provider.price_provider is None:
        return Price(0.0, False, _free(provider))
    table_usage = Usage(
        input_tokens=usage.input_tokens,
        cache_read_tokens=usage.cached_input_tokens,
        cache_write_tokens=usage.cache_write_tokens,
        output_tokens=usage.output_tokens,
    )
    calculation = _table(provider.price_provider, model_names, table_usage, at)
    if calculation is not None:
        return Price(float(round(calculation.total_price, COST_DECIMALS)), True, _table_rates(calculation))
    log.warning(
        "No price known for %s model %s; recording cost 0 (priced: false). Add it to PRICING_FILE.",
        provider.name, " / ".join(model_names),
    )
    return Price(0.0, False, Rates(None, None, None, None, source=f"{PRICE_TABLE}: model not in table"))
