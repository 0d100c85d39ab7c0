"""Per-user budgets that concurrent requests cannot overshoot.

Before an LLM call the request reserves its worst case (estimated input plus the
most output it asks for) on a counter per user and UTC day / month, with one
atomic conditional update: the counter only moves if it stays within the limit.
After the call the reservation is settled to the real usage; a failed call releases
it. Because the check and the increment are one database operation, the limit holds
across threads, gunicorn workers and app instances sharing the database.
"""
import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal

from backend.budgets import repository
from backend.errors import TooManyRequests
from backend.schemas import UTCDateTime
from backend.usage.rollups import user_usage

WINDOWS = ("day", "month")
LIMIT_FIELDS = ("tokensPerDay", "usdPerDay", "tokensPerMonth", "usdPerMonth")
# Counters keep cost in whole 1e-10 USD, the ledger's exact precision, so sums never drift.
COST_UNITS_PER_USD = 10**10
GLOBAL = "global"
_TIMESTAMP = UTCDateTime()


def to_units(usd):
    return int((Decimal(str(usd)) * COST_UNITS_PER_USD).to_integral_value())


def to_usd(units):
    return float(Decimal(units) / COST_UNITS_PER_USD)


def period_of(window, now):
    """(period label, when it resets) for a UTC day or month."""
    if window == "day":
        start = datetime(now.year, now.month, now.day, tzinfo=timezone.utc)
        return start.strftime("%Y-%m-%d"), start + timedelta(days=1)
    first_of_next = datetime(now.year + now.month // 12, now.month % 12 + 1, 1, tzinfo=timezone.utc)
    return now.strftime("%Y-%m"), first_of_next


def counter_key(owner, window, period):
    return f"{owner}|{window}|{period}"


def window_limits_usd(limits, window):
    """(token limit, USD limit) of one window; None where the budget sets none."""
    suffix = "PerDay" if window == "day" else "PerMonth"
    return limits.get(f"tokens{suffix}"), limits.get(f"usd{suffix}")


def _window_limits(limits, window):
    tokens, usd = window_limits_usd(limits, window)
    return tokens, (to_units(usd) if usd is not None else None)


def effective_limits(db, user_id):
    """The user's own budget, else the default; {} when neither sets a limit."""
    budget = repository.get_budget(db, user_id) or repository.get_budget(db, repository.DEFAULT) or {}
    return {name: budget[name] for name in LIMIT_FIELDS if budget.get(name) is not None}


class BudgetExceeded(TooManyRequests):
    pass


@dataclass
class Reservation:
    user_id: object
    tokens: int = 0
    cost_units: int = 0
    windows: list = field(default_factory=list)
    limits: dict = field(default_factory=dict)  # the effective limits read when reserving


def _exceeded(db, key, window, token_limit, cost_limit, tokens, cost_units, resets_at, now):
    counter = repository.get_counter(db, key)
    if token_limit is not None and counter["tokens"] + tokens > token_limit:
        unit, limit, used = "tokens", token_limit, counter["tokens"]
    else:
        unit, limit, used = "usd", to_usd(cost_limit), to_usd(counter["costUnits"])
    resets = _TIMESTAMP._serialize(resets_at, None, None)
    retry_after = max(1, math.ceil((resets_at - now).total_seconds()))
    return BudgetExceeded(
        f"Budget exceeded: {used} of {limit} {unit} used this {window} (this request may need "
        f"{tokens if unit == 'tokens' else to_usd(cost_units)} more); resets at {resets}",
        data={"limit": limit, "used": used, "unit": unit, "window": window, "resetsAt": resets},
        headers={"Retry-After": str(retry_after)},
    )


def reserve(db, user_id, tokens, cost_usd, now):
    """Reserve a worst case on every window the user has a limit for, or raise BudgetExceeded."""
    limits = effective_limits(db, user_id)
    reservation = Reservation(user_id, tokens, to_units(cost_usd), limits=limits)
    for window in WINDOWS:
        token_limit, cost_limit = _window_limits(limits, window)
        if token_limit is None and cost_limit is None:
            continue
        period, resets_at = period_of(window, now)
        key = counter_key(user_id, window, period)
        fields = {"owner": str(user_id), "window": window, "period": period, "expiresAt": resets_at + timedelta(days=62)}
        def opening(window=window, period=period):
            ledger_tokens, ledger_cost = user_usage(db, user_id, window, period)
            return ledger_tokens, to_units(ledger_cost)

        if not repository.try_add(db, key, fields, tokens, reservation.cost_units, token_limit, cost_limit, opening):
            release(db, reservation)
            raise _exceeded(db, key, window, token_limit, cost_limit, tokens, reservation.cost_units, resets_at, now)
        reservation.windows.append((key, fields))
    return reservation


def settle(db, reservation, actual_tokens, actual_cost_usd):
    """Replace the reserved worst case with what the call really used; returns the counters after."""
    actual_units = to_units(actual_cost_usd)
    counters = []
    for key, fields in reservation.windows:
        counter = repository.add(db, key, fields, actual_tokens - reservation.tokens,
                                 actual_units - reservation.cost_units)
        counters.append(counter)
    reservation.windows = []
    return counters


def release(db, reservation):
    settle(db, reservation, 0, 0)


def add_global_spend(db, cost_usd, now):
    """The whole service's spend today (for the optional global daily limit alert)."""
    period, resets_at = period_of("day", now)
    fields = {"owner": GLOBAL, "window": "day", "period": period, "expiresAt": resets_at + timedelta(days=62)}
    return repository.add(db, counter_key(GLOBAL, "day", period), fields, 0, to_units(cost_usd))


def usage_report(db, user_id, now):
    """What /api/me/usage shows: limits, usage and what is left. Under a limit, usage is the
    budget counter (requests in flight included); without one, what the ledger holds."""
    limits = effective_limits(db, user_id)
    report = []
    for window in WINDOWS:
        token_limit, cost_limit = _window_limits(limits, window)
        period, resets_at = period_of(window, now)
        counter = repository.get_counter(db, counter_key(user_id, window, period), None)
        if counter is None:
            ledger_tokens, ledger_cost = user_usage(db, user_id, window, period)
            counter = {"tokens": ledger_tokens, "costUnits": to_units(ledger_cost)}
        report.append({
            "window": window,
            "period": period,
            "resetsAt": resets_at,
            "limits": {"tokens": token_limit, "usd": to_usd(cost_limit) if cost_limit is not None else None},
            "used": {"tokens": counter["tokens"], "usd": to_usd(counter["costUnits"])},
            "remaining": {
                "tokens": max(0, token_limit - counter["tokens"]) if token_limit is not None else None,
                "usd": max(0.0, to_usd(cost_limit - counter["costUnits"])) if cost_limit is not None else None,
            },
        })
    return report
