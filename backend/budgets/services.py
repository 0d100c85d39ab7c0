"""Per-user budgets that concurrent requests cannot overshoot.

Before an LLM call the request reserves its worst case (estimated input plus the
most output it asks for) on a counter per user and UTC day / month, with one
atomic conditional update: the counter only moves if it stays within the limit.
The call's ledger record carries the reservation, and the ledger writer settles it to the
real usage in the batch that writes the record; a call the provider refused releases it.
Because the check and the increment are one database operation, the limit holds across
threads, gunicorn workers and app instances sharing the database.
"""
import logging
import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal

from pymongo.errors import PyMongoError

from backend.alerts.services import queue_crossings
from backend.auth.repository import (
    DEFAULT_BUDGET,
    KEY_BUDGET,
    ORG,
    ORG_BUDGET,
    OWN_BUDGET,
    TEAM,
    TEAM_BUDGET,
    find_with_budgets,
)
from backend.budgets import repository
from backend.errors import TooManyRequests, UnprocessableEntity
from backend.orgs.repository import DEFAULT_ORG_ID

# Counters keep cost in whole 1e-10 USD, the ledger's exact precision, so sums never drift.
from backend.pricing.services import to_units, to_usd
from backend.schemas import UTCDateTime
from backend.usage.rollups import ledger_usage

log = logging.getLogger(__name__)
WINDOWS = ("day", "month")
LIMIT_FIELDS = ("tokensPerDay", "usdPerDay", "tokensPerMonth", "usdPerMonth")
GLOBAL = "global"
_TIMESTAMP = UTCDateTime()


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


# Whose counters a call counts on: its user's, its team's (when the user is in one), its
# organization's and its API key's (when it came with one). A counter's owner is the user id,
# team:<id>, org:<id> or key:<id>.
SCOPES = ("user", "team", "org", "key")
SCOPE_FIELDS = {"user": "userId", "team": "teamId", "org": "orgId", "key": "apiKeyId"}
WHOSE = {"user": "your", "team": "your team's", "org": "your organization's", "key": "this API key's"}


def _limits(budget):
    return {name: budget[name] for name in LIMIT_FIELDS if (budget or {}).get(name) is not None}


def _first(user, name):
    return (user.get(name) or [None])[0]


def scoped_limits(db, user):
    """{"user": limits, "team": limits, "org": limits}, {} where no limit applies: the user's own
    budget (else the default), their team's and their organization's. Read from the budgets
    loaded with the user (no database read), or now for a user loaded without them."""
    if OWN_BUDGET not in user:
        user = {**user, **(find_with_budgets(db, user["_id"]) or {})}
    return {"user": _limits(_first(user, OWN_BUDGET) or _first(user, DEFAULT_BUDGET)),
            "team": _limits(_first(user, TEAM_BUDGET)), "org": _limits(_first(user, ORG_BUDGET)),
            "key": _limits(_first(user, KEY_BUDGET))}


def owners(attribution):
    """[(scope, counter owner, id)] of a user or ledger record ({userId|_id, teamId, orgId, apiKeyId})."""
    ids = {"user": attribution.get("userId", attribution.get("_id")), "team": attribution.get("teamId"),
           "org": attribution.get("orgId") or DEFAULT_ORG_ID, "key": attribution.get("apiKeyId")}
    return [(scope, str(ids[scope]) if scope == "user" else f"{scope}:{ids[scope]}", ids[scope])
            for scope in SCOPES if ids[scope] is not None]


def _labels(user):
    """How alerts name the team and organization of the user's calls."""
    org, team = _first(user, ORG), _first(user, TEAM)
    org_name = org["name"] if org else str(user.get("orgId") or DEFAULT_ORG_ID)
    labels = {"org": f"Organization {org_name}"}
    if user.get("teamId") is not None:
        labels["team"] = f"Team {team['name'] if team else user['teamId']} ({org_name})"
    if user.get("apiKeyId") is not None:
        labels["key"] = f"API key {user.get('apiKeyName', user['apiKeyId'])} ({user['email']})"
    return labels


def _ticket_limits(ticket):
    """Per-scope limits of a ticket; tickets spooled before organizations held the user's alone."""
    limits = ticket["limits"]
    return limits if set(limits) <= set(SCOPES) else {"user": limits}


class BudgetExceeded(TooManyRequests):
    pass


@dataclass(frozen=True)
class Policy:
    """What the app config says about budgets beyond the stored limits."""

    alert_thresholds: tuple = ()
    global_daily_limit_usd: Decimal | None = None


def _window_fields(owner, window, now):
    period, resets_at = period_of(window, now)
    fields = {"owner": str(owner), "window": window, "period": period, "expiresAt": resets_at + timedelta(days=62)}
    return counter_key(owner, window, period), fields, resets_at


def _opening(db, scope, owner_id, window, period):
    """What a new counter starts at: what the ledger already holds for its owner and window."""
    def opening():
        ledger_tokens, ledger_cost = ledger_usage(db, SCOPE_FIELDS[scope], owner_id, window, period)
        return ledger_tokens, to_units(ledger_cost)

    return opening


@dataclass
class Reservation:
    """A request's claim on its counters (its user's, team's and organization's), from before the
    LLM call until its record is written.

    Every recorded call settles into each of those day and month counters, whether or not a limit
    applied when it reserved: so a budget created while requests are in flight still counts
    them, and each counter equals the ledger for its window. The call's ledger record carries
    its `ticket()`; the ledger writer settles it (apply_settlements) in the same batch that
    writes the record, so a record settles exactly once and never on the response path.
    """

    db: object
    policy: Policy
    tokens: int = 0
    cost_units: int = 0
    reserved: dict = field(default_factory=dict)  # counter key -> fields, where the worst case was added
    limits: dict = field(default_factory=dict)  # {scope: limits} read when reserving
    labels: dict = field(default_factory=dict)  # {scope: name} for alerts about the team and organization
    settled: bool = False

    def ticket(self):
        """What the ledger writer needs to settle the call: the worst case reserved per counter, the
        limits read when reserving, and the alert policy. Handing it over ends the reservation."""
        self.settled = True
        global_limit = self.policy.global_daily_limit_usd
        return {"reserved": {key: [self.tokens, self.cost_units] for key in self.reserved},
                "limits": self.limits, "labels": self.labels, "thresholds": list(self.policy.alert_thresholds),
                "globalDailyLimitUsd": str(global_limit) if global_limit is not None else None}

    def release(self):
        """Give back the worst case of a call the provider refused (nothing was billed)."""
        if self.settled:
            return
        self.settled = True
        for key, fields in self.reserved.items():
            repository.add(self.db, key, fields, -self.tokens, -self.cost_units)


def apply_settlements(db, records, now):
    """Settle written ledger records that carry a reservation ticket (`_budget`): each one's
    usage replaces its reserved worst case on the day and month counters of its user, team and
    organization (a counter opens at what the ledger holds before this batch), merged per
    counter, then the alerts the new totals cross are queued. Called for the records the ledger
    accepted, before their rollups."""
    deltas, spend = {}, {}
    for record in records:
        ticket = record["_budget"]
        for scope, owner, owner_id in owners(record):
            for window in WINDOWS:
                key, fields, _ = _window_fields(owner, window, record["timestamp"])
                reserved_tokens, reserved_units = ticket["reserved"].get(key, (0, 0))
                entry = deltas.setdefault(key, {"tokens": 0, "units": 0, "fields": fields, "window": window,
                                                "scope": scope, "ownerId": owner_id, "record": record,
                                                "ticket": ticket})
                entry["tokens"] += record["totalTokens"] - reserved_tokens
                entry["units"] += to_units(record["cost"]) - reserved_units
        if ticket["globalDailyLimitUsd"] is not None and record["cost"]:
            day = spend.setdefault(record["date"], {"cost": Decimal(0), "ticket": ticket, "at": record["timestamp"]})
            day["cost"] += Decimal(str(record["cost"]))
    for key, entry in deltas.items():
        _settle(db, key, entry, now)
    for day in spend.values():
        spent = add_global_spend(db, day["cost"], day["at"])
        queue_crossings(db, {"key": GLOBAL, "label": "The whole service"}, "day", spent["period"], "usd",
                        to_usd(spent["costUnits"]), float(day["ticket"]["globalDailyLimitUsd"]),
                        day["ticket"]["thresholds"], now)


def _settle(db, key, entry, now):
    """One counter's merged settlement, and the alerts its new total crosses."""
    record, ticket, window, scope, fields = (entry["record"], entry["ticket"], entry["window"], entry["scope"],
                                             entry["fields"])
    counter = repository.add_opened(db, key, fields, entry["tokens"], entry["units"],
                                    _opening(db, scope, entry["ownerId"], window, fields["period"]))
    token_limit, usd_limit = window_limits_usd(_ticket_limits(ticket).get(scope, {}), window)
    label = record["userEmail"] if scope == "user" else ticket.get("labels", {}).get(scope, fields["owner"])
    for unit, used, limit in (("tokens", counter["tokens"], token_limit),
                              ("usd", to_usd(counter["costUnits"]), usd_limit)):
        if limit is not None:
            queue_crossings(db, {"key": fields["owner"], "label": label}, window, counter["period"], unit, used,
                            limit, ticket["thresholds"], now)


def _exceeded(db, key, scope, window, token_limit, cost_limit, tokens, cost_units, resets_at, now):
    # Read after the refusal: other requests may have settled or released since, so neither limit
    # need be over now. The token limit is named when it is over or when there is no USD limit.
    counter = repository.get_counter(db, key)
    if token_limit is not None and (counter["tokens"] + tokens > token_limit or cost_limit is None):
        unit, limit, used = "tokens", token_limit, counter["tokens"]
    else:
        unit, limit, used = "usd", to_usd(cost_limit), to_usd(counter["costUnits"])
    resets = _TIMESTAMP._serialize(resets_at, None, None)
    retry_after = max(1, math.ceil((resets_at - now).total_seconds()))
    return BudgetExceeded(
        f"Budget exceeded: {used} of {limit} {unit} of {WHOSE[scope]} {window} budget used (this request may "
        f"need {tokens if unit == 'tokens' else to_usd(cost_units)} more); resets at {resets}",
        data={"scope": scope, "limit": limit, "used": used, "unit": unit, "window": window, "resetsAt": resets},
        headers={"Retry-After": str(retry_after)},
    )


def reserve(db, user, tokens, cost_usd, now, policy=Policy(), priced=True, model=None):
    """Reserve a worst case on every counter of the user, their team and their organization that
    has a limit, all or nothing, or raise BudgetExceeded. `now` is when the call is made. A USD
    limit cannot bind a model without a price, so such a request is refused (422)."""
    limits = scoped_limits(db, user)
    if not priced and any(window_limits_usd(limits[scope], window)[1] is not None
                          for scope in SCOPES for window in WINDOWS):
        raise UnprocessableEntity(
            f"Model {model!r} has no known price, and a USD budget applies to you, your team or your "
            "organization: add its price to PRICING_FILE or choose a priced model",
            errors={"model": ["No price is known for this model; a USD budget applies."]},
        )
    reservation = Reservation(db, policy, tokens, to_units(cost_usd), limits=limits, labels=_labels(user))
    for scope, owner, owner_id in owners(user):
        for window in WINDOWS:
            token_limit, cost_limit = _window_limits(limits[scope], window)
            if token_limit is None and cost_limit is None:
                continue
            key, fields, resets_at = _window_fields(owner, window, now)
            opening = _opening(db, scope, owner_id, window, fields["period"])
            try:
                taken = repository.try_add(db, key, fields, tokens, reservation.cost_units, token_limit, cost_limit,
                                           opening)
            except PyMongoError:
                _give_back(reservation)
                raise
            if not taken:
                reservation.release()
                raise _exceeded(db, key, scope, window, token_limit, cost_limit, tokens, reservation.cost_units,
                                resets_at, now)
            reservation.reserved[key] = fields
    return reservation


def _give_back(reservation):
    """A database error part-way through: what was reserved so far is given back, if it can be."""
    try:
        reservation.release()
    except PyMongoError:
        log.exception("Releasing a partial reservation failed: counters %s keep it until their window ends",
                      ", ".join(reservation.reserved))


def add_global_spend(db, cost_usd, now):
    """The whole service's spend today (for the optional global daily limit alert)."""
    key, fields, _ = _window_fields(GLOBAL, "day", now)
    return repository.add(db, key, fields, 0, to_units(cost_usd))


def usage_report(db, user, now):
    """What /api/me/usage shows: limits, usage and what is left. Usage is the budget counter
    (requests in flight included); before the window's first request, what the ledger holds."""
    user_id = user["_id"]
    limits = scoped_limits(db, user)["user"]
    report = []
    for window in WINDOWS:
        token_limit, cost_limit = _window_limits(limits, window)
        period, resets_at = period_of(window, now)
        counter = repository.get_counter(db, counter_key(user_id, window, period), None)
        if counter is None:
            ledger_tokens, ledger_cost = ledger_usage(db, "userId", user_id, window, period)
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
