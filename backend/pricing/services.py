"""Exact cost of a call: the PRICING_FILE overrides first, then the genai-prices table.

A model's prices are a PriceSheet: per kind of token (uncached input, cached input,
cache writes, output) a base rate and, for tiered models, the rates that apply once a
call's input passes a threshold. genai-prices' rule is a cliff: a call whose input
tokens exceed a tier's start pays that tier's rate for every token of the kind. A
call is priced at the tier its own input selects; a reservation at the most expensive
tier its worst-case input could select.

Input tokens include cache reads and cache writes; each part is charged at its own
rate (a missing cache rate falls back to the input rate, as genai-prices does), so no
token is priced twice.
"""
import logging
from dataclasses import dataclass, field
from decimal import Decimal
from importlib.metadata import version

from genai_prices import data_snapshot
from genai_prices.types import TieredPrices

log = logging.getLogger(__name__)

PRICE_TABLE = f"genai-prices {version('genai-prices')}"
MILLION = Decimal(1_000_000)
# Every per-million rate in the table has at most four decimals, so each call's
# cost is a whole number of 1e-10 USD; rounding there is exact, not an estimate.
COST_DECIMALS = 10
COST_UNITS_PER_USD = 10**COST_DECIMALS


def to_units(usd):
    """USD as a whole number of 1e-10 USD, where sums are exact."""
    return int((Decimal(str(usd)) * COST_UNITS_PER_USD).to_integral_value())


def to_usd(units):
    return float(Decimal(units) / COST_UNITS_PER_USD)

KINDS = ("input", "cached_input", "cache_write", "output")
_TABLE_KEYS = {"input": "input_mtok", "cached_input": "cache_read_mtok", "cache_write": "cache_write_mtok",
               "output": "output_mtok"}
_OVERRIDE_KEYS = {"input": "inputPer1M", "cached_input": "cachedInputPer1M", "cache_write": "cacheWritePer1M",
                  "output": "outputPer1M"}


@dataclass(frozen=True)
class Rate:
    """USD per million tokens of one kind: `base`, then `tiers` ((start, rate), ...) by start."""

    base: Decimal | None
    tiers: tuple = ()

    def at(self, input_tokens):
        applied = self.base
        for start, rate in self.tiers:
            if input_tokens > start:
                applied = rate
        return applied

    def highest_up_to(self, input_tokens):
        """The dearest rate any call with at most `input_tokens` input tokens can pay."""
        candidates = [self.base] + [rate for start, rate in self.tiers if input_tokens > start]
        known = [rate for rate in candidates if rate is not None]
        return max(known) if known else None


@dataclass(frozen=True)
class Rates:
    """The flat rates one call is charged at (one tier), and where they came from."""

    input_per_1m: float | None
    cached_input_per_1m: float | None
    cache_write_per_1m: float | None
    output_per_1m: float | None
    source: str

    def as_record(self):
        return {
            "inputPer1M": self.input_per_1m,
            "cachedInputPer1M": self.cached_input_per_1m,
            "cacheWritePer1M": self.cache_write_per_1m,
            "outputPer1M": self.output_per_1m,
            "source": self.source,
        }


def _float(value):
    return None if value is None else float(value)


@dataclass(frozen=True)
class PriceSheet:
    """Everything known about a model's price. `priced` is False for a model nobody prices."""

    rates: dict  # kind -> Rate
    source: str
    priced: bool = True
    context_window: int | None = None
    tier_starts: tuple = field(default=())

    def _kind_rate(self, kind, input_tokens):
        rate = self.rates[kind].at(input_tokens)
        if rate is None and kind in ("cached_input", "cache_write"):
            rate = self.rates["input"].at(input_tokens)
        return rate

    def rates_at(self, input_tokens):
        """The flat rates a call with this many input tokens is charged at."""
        values = [_float(self._kind_rate(kind, input_tokens)) for kind in KINDS]
        return Rates(*values, source=self.source)

    def cost(self, usage):
        """Exact USD of a TokenUsage (Decimal)."""
        if not self.priced:
            return Decimal(0)
        counts = {
            "input": usage.input_tokens - usage.cached_input_tokens - usage.cache_write_tokens,
            "cached_input": usage.cached_input_tokens,
            "cache_write": usage.cache_write_tokens,
            "output": usage.output_tokens,
        }
        total = sum(count * (self._kind_rate(kind, usage.input_tokens) or 0) for kind, count in counts.items())
        return Decimal(total) / MILLION

    def worst_cost(self, input_tokens, output_tokens):
        """The most a call with at most these tokens can cost: every input token at the dearest
        input-side rate, output at the dearest output rate, of any tier that input can reach."""
        if not self.priced:
            return Decimal(0)
        input_side = [self.rates[kind].highest_up_to(input_tokens) for kind in ("input", "cached_input", "cache_write")]
        input_rate = max((rate for rate in input_side if rate is not None), default=Decimal(0))
        output_rate = self.rates["output"].highest_up_to(input_tokens) or Decimal(0)
        return (input_tokens * input_rate + output_tokens * output_rate) / MILLION

    def tiers(self):
        """[{aboveInputTokens, inputPer1M, ...}] for token-info: the rates past each threshold."""
        return [{"aboveInputTokens": start, **{key: value for key, value in self.rates_at(start + 1).as_record().items()
                                               if key != "source"}} for start in self.tier_starts]


@dataclass(frozen=True)
class Price:
    """What one call cost and at which rates."""

    cost: float
    priced: bool
    rates: Rates

    def as_record(self):
        return self.rates.as_record()


def _table_rate(value):
    if isinstance(value, TieredPrices):
        return Rate(value.base, tuple((tier.start, tier.price) for tier in value.tiers))
    return Rate(value)


def _table_sheet(price_provider, model_names, at):
    snapshot = data_snapshot.get_snapshot()
    for model_name in model_names:
        try:
            provider, model = snapshot.find_provider_model(model_name, None, price_provider, None)
        except LookupError:
            continue
        prices = model.get_prices(at)
        rates = {kind: _table_rate(getattr(prices, key, None)) for kind, key in _TABLE_KEYS.items()}
        starts = sorted({start for rate in rates.values() for start, _ in rate.tiers})
        return PriceSheet(rates, f"{PRICE_TABLE}: {provider.id}/{model.id}",
                          context_window=model.context_window, tier_starts=tuple(starts))
    return None


def _override_sheet(overrides, provider_name, model_names):
    for model_name in model_names:
        entry = overrides.get((provider_name, model_name))
        if entry is not None:
            rates = {kind: Rate(entry.get(key)) for kind, key in _OVERRIDE_KEYS.items()}
            return PriceSheet(rates, f"PRICING_FILE: {provider_name}/{model_name}")
    return None


def _free_sheet(provider):
    return PriceSheet({kind: Rate(Decimal(0)) for kind in KINDS}, provider.free_reason)


UNKNOWN = PriceSheet({kind: Rate(None) for kind in KINDS}, f"{PRICE_TABLE}: model not in table", priced=False)


def price_sheet(provider, model_names, at, overrides):
    """The sheet for the first of `model_names` anyone prices; UNKNOWN when none is."""
    model_names = list(dict.fromkeys(name for name in model_names if name))
    sheet = _override_sheet(overrides, provider.name, model_names)
    if sheet is None and provider.price_provider is None:
        sheet = _free_sheet(provider)
    if sheet is None:
        sheet = _table_sheet(provider.price_provider, model_names, at)
    return sheet or UNKNOWN


def reserved_price(provider, sheet, input_tokens, worst_cost):
    """The Price of a call at its budget reservation's worst case (`worst_cost`, from
    `sheet.worst_cost`): what a call the process was killed during is recorded at."""
    free = provider.price_provider is None and sheet.source == provider.free_reason
    return Price(float(round(worst_cost, COST_DECIMALS)), sheet.priced and not free, sheet.rates_at(input_tokens))


def price_call(provider, model_names, usage, at, overrides):
    """Cost of one call; model_names are tried in order (server-reported name, then requested)."""
    sheet = price_sheet(provider, model_names, at, overrides)
    if not sheet.priced:
        log.warning("No price known for %s model %s; recording cost 0 (priced: false). Add it to PRICING_FILE.",
                    provider.name, " / ".join(dict.fromkeys(name for name in model_names if name)))
        return Price(0.0, False, sheet.rates_at(0))
    free = provider.price_provider is None and sheet.source == provider.free_reason
    return Price(float(round(sheet.cost(usage), COST_DECIMALS)), not free, sheet.rates_at(usage.input_tokens))
