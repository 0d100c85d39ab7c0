"""Exact cost of a call from the genai-prices table.

genai-prices counts input_tokens including cache reads and charges the cached
ones at the cache-read rate, which is our token convention: no token is priced twice.
"""
import logging
from dataclasses import dataclass
from importlib.metadata import version

from genai_prices import Usage, calc_price

log = logging.getLogger(__name__)

PRICE_TABLE = f"genai-prices {version('genai-prices')}"
# Every per-million rate in the table has at most four decimals, so each call's
# cost is a whole number of 1e-10 USD; rounding there is exact, not an estimate.
COST_DECIMALS = 10


@dataclass(frozen=True)
class Price:
    cost: float
    priced: bool
    source: str
    input_per_1m: float | None = None
    cached_input_per_1m: float | None = None
    output_per_1m: float | None = None

    def as_record(self):
        return {
            "inputPer1M": self.input_per_1m,
            "cachedInputPer1M": self.cached_input_per_1m,
            "outputPer1M": self.output_per_1m,
            "source": self.source,
        }


def _rate(value):
    return None if value is None else float(value)


def price_call(price_provider, model_names, usage, at):
    """Cost of one call; model_names are tried in order (server-reported name, then requested)."""
    if price_provider is None:
        return Price(cost=0.0, priced=False, source="demo provider: no spend")
    table_usage = Usage(
        input_tokens=usage.input_tokens,
        cache_read_tokens=usage.cached_input_tokens,
        output_tokens=usage.output_tokens,
    )
    for model in model_names:
        try:
            calculation = calc_price(
                table_usage, model_ref=model, provider_id=price_provider, genai_request_timestamp=at
            )
        except LookupError:
            continue
        rates = calculation.model_price
        return Price(
            cost=float(round(calculation.total_price, COST_DECIMALS)),
            priced=True,
            source=f"{PRICE_TABLE}: {calculation.provider.id}/{calculation.model.id}",
            input_per_1m=_rate(rates.input_mtok),
            cached_input_per_1m=_rate(rates.cache_read_mtok if rates.cache_read_mtok is not None else rates.input_mtok),
            output_per_1m=_rate(rates.output_mtok),
        )
    log.warning(
        "No price known for %s model %s; recording cost 0 (priced: false)",
        price_provider,
        " / ".join(dict.fromkeys(model_names)),
    )
    return Price(cost=0.0, priced=False, source=f"{PRICE_TABLE}: model not in table")
