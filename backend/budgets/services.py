"""Per-user budgets that concurrent requests cannot overshoot.

Before an LLM call the request reserves its worst case (estimated input plus the
most output it asks for) on a counter per user and local day / month (the organization's zone), with one
atomic conditional update: the counter only moves if it stays within the limit.
The call's ledger record carries the reservation, and the ledger writer settles it to the
real usage in the batch that writes the record; a call the provider refused releases it.
Because the check and the increment are one database operation, the limit holds across
threads, gunicorn workers and app instances sharing the database.
"""
import logging
import math
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal

from pymongo.errors import PyMongoError

from backend.admin.services import TRAILING_DAYS, crossing_day, project
from backend.alerts.services import queue_crossings, queue_projected_crossing
from backend.auth.caller import org_of
from backend.auth.repository import find_by_id, ids_in_org
from backend.keys.services import keys_of
from backend.budgets import repository
from backend.budgets.counter_keys import (
    GLOBAL,
    SCOPES,
    UTC_RULE,
    WINDOWS,
    BudgetCounter,
    counters,
    global_day,
    owner_ids,
)
from backend.errors import Forbidden, TooManyRequests, UnprocessableEntity

# Counters keep cost in whole 1e-10 USD, the ledger's exact precision, so sums never drift.
from backend.pricing.services import to_units, to_usd
from backend.schemas import format_utc
from backend.orgs.services import find_org, find_team, zone_rule
from backend.timezones import ZoneRule, aware, day_start, local_date, zone
from backend.usage.queries import period_totals

log = logging.getLogger(__name__)
LIMIT_FIELDS = ("tokensPerDay", "usdPerDay", "tokensPerMonth", "usdPerMonth")
WHOSE = {"user": "your", "team": "your team's", "org": "your organization's", "key": "this API key's"}
# Who set a budget: a platform admin's limits are a ceiling for organization admins.
PLATFORM, ORGANIZATION = "platform", "organization"


def window_limits_usd(limits, window):
    """(token limit, USD limit) of one window; None where the budget sets none."""
    suffix = "PerDay" if window == "day" else "PerMonth"
    return limits.get(f"tokens{suffix}"), limits.get(f"usd{suffix}")


def _window_limits(limits, window):
    tokens, usd = window_limits_usd(limits, window)
    return tokens, (to_units(usd) if usd is not None else None)


def _limits(budget):
    return {name: budget[name] for name in LIMIT_FIELDS if (budget or {}).get(name) is not None}


def scoped_limits(caller):
    """{"user": limits, "team": limits, "org": limits, "key": limits}, {} where no limit applies:
    the caller's own budget (else the default), their team's, organization's and key's, as the
    caller was loaded with them (no database read). A platform admin's calls are never bound by
    a limit an organization admin set (the platform role outranks the organization's)."""
    budgets = caller.budgets

    def binding(budget):
        return None if caller.owned_by_platform_admin and (budget or {}).get("setBy") == ORGANIZATION else budget

    return {"user": _limits(binding(budgets.own or budgets.default)), "team": _limits(binding(budgets.team)),
            "org": _limits(binding(budgets.org)), "key": _limits(binding(budgets.key))}


def caller_owners(caller):
    return owner_ids(caller.id, caller.team_id, caller.org_id, caller.api_key_id)


def record_owners(record):
    return owner_ids(record["userId"], record.get("teamId"), record.get("orgId"), record.get("apiKeyId"))


def _labels(caller):
    """How alerts name the team, organization and key of the caller's calls."""
    org_name = caller.org_name or str(caller.org_id)
    labels = {"org": f"Organization {org_name}"}
    if caller.team_id is not None:
        labels["team"] = f"Team {caller.team_name or caller.team_id} ({org_name})"
    if caller.api_key_id is not None:
        labels["key"] = f"API key {caller.api_key_name or caller.api_key_id} ({caller.email})"
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


def _ledger_totals(db, counter):
    """(tokens, cost) the ledger holds for a counter's owner in its window."""
    between = None if counter.plain_utc else (counter.starts_at, counter.resets_at)
    return period_totals(db, counter.scope, counter.owner_id, counter.window, counter.period, between)


def _opening(db, counter):
    """What a new counter starts at: what the ledger already holds for its owner and window."""
    def opening():
        ledger_tokens, ledger_cost = _ledger_totals(db, counter)
        return ledger_tokens, to_units(ledger_cost)

    return opening


@dataclass
class Reservation:
    """A request's claim on its counters (its user's, team's and organization's), from before the
    LLM call until its record is written.

    Every recorded call settles into each of those day and month counters, whether or not a limit
    applied when it reserved: so a budget created while requests are in flight still counts
    them, and each counter equals the ledger for its window. The call's ledger record carries
    its `ticket()`; the ledger writer settles it (settle_written) in the same batch that
    writes the record, so a record settles exactly once and never on the response path.
    """

    db: object
    policy: Policy
    id: str = ""  # the call's id: the counters remember it, so it is given back once
    tokens: int = 0
    cost_units: int = 0
    reserved: dict = field(default_factory=dict)  # counter key -> fields, where the worst case was added
    limits: dict = field(default_factory=dict)  # {scope: limits} read when reserving
    labels: dict = field(default_factory=dict)  # {scope: name} for alerts about the team and organization
    rule: ZoneRule = UTC_RULE  # the organization's zone: the windows the call settles in
    settled: bool = False

    def ticket(self, ending=True):
        """What the ledger writer needs to settle the call: the worst case reserved per counter, the
        limits read when reserving, and the alert policy. Handing it over ends the reservation
        (`ending=False`: a copy for the call's intent, the reservation goes on)."""
        if ending:
            self.settled = True
        global_limit = self.policy.global_daily_limit_usd
        return {"reserved": {key: [self.tokens, self.cost_units] for key in self.reserved},
                "limits": self.limits, "labels": self.labels, "thresholds": list(self.policy.alert_thresholds),
                "globalDailyLimitUsd": str(global_limit) if global_limit is not None else None,
                "timeZone": self.rule.as_ticket()}

    def release(self):
        """Give back the worst case of a call the provider refused (nothing was billed)."""
        if self.settled:
            return
        self.settled = True
        for key in self.reserved:
            repository.give_back(self.db, key, self.tokens, self.cost_units, self.id)


def _counters_of(cache, record, ticket):
    """[(key, counter)] of the windows a record settles in: those of the zone rule its reservation
    was made under (a ticket from before zones: UTC). The records of a batch share a few owners and
    windows: a window found for one record is used for the next one inside it."""
    at, rule = aware(record["timestamp"]), ticket.get("timeZone")
    owners = (record["userId"], record.get("teamId"), record.get("orgId"), record.get("apiKeyId"), repr(rule))
    found = cache.get(owners)
    if found is None or not all(c.starts_at <= at < c.resets_at for _, c in found):
        found = cache[owners] = [(c.key, c) for c in counters(record_owners(record), at, ZoneRule.of(rule))]
    return found


def settle_written(db, written, now, batch):
    """The ledger writer's listener: settle written ledger records that carry a reservation
    ticket. Each one's usage replaces its reserved worst case on the day and month counters of
    its user, team, organization and key (a counter opens at what the ledger holds before this
    batch), merged per counter, once per `batch` (settled again after a crash, a counter that took
    it already is left as it is), then the alerts the new totals cross are queued."""
    deltas, spend, counters_of = {}, {}, {}
    for record, ticket in written:
        if ticket is None:
            continue
        keyed = _counters_of(counters_of, record, ticket)
        tokens, units, reserved = record["totalTokens"], to_units(record["cost"]), ticket["reserved"]
        for key, counter in keyed:
            reserved_tokens, reserved_units = reserved.get(key, (0, 0))
            entry = deltas.get(key)
            if entry is None:
                entry = deltas[key] = {"tokens": 0, "units": 0, "counter": counter, "record": record, "ticket": ticket}
            entry["tokens"] += tokens - reserved_tokens
            entry["units"] += units - reserved_units
        if ticket["globalDailyLimitUsd"] is not None and record["cost"]:
            day = spend.setdefault(record["date"], {"cost": Decimal(0), "ticket": ticket, "at": record["timestamp"]})
            day["cost"] += Decimal(str(record["cost"]))
    for entry in deltas.values():
        _settle(db, entry, now, batch)
    for day in spend.values():
        spent = add_global_spend(db, day["cost"], day["at"], batch)
        queue_crossings(db, {"key": GLOBAL, "label": "The whole service"}, "day", spent["period"], "usd",
                        to_usd(spent["costUnits"]), float(day["ticket"]["globalDailyLimitUsd"]),
                        day["ticket"]["thresholds"], now)


def _settle(db, entry, now, batch):
    """One counter's merged settlement, and the alerts its new total crosses."""
    record, ticket, counter = entry["record"], entry["ticket"], entry["counter"]
    stored = repository.add_opened(db, counter.key, counter.fields(), entry["tokens"], entry["units"],
                                   _opening(db, counter), batch)
    token_limit, usd_limit = window_limits_usd(_ticket_limits(ticket).get(counter.scope, {}), counter.window)
    label = record["userEmail"] if counter.scope == "user" else ticket.get("labels", {}).get(counter.scope,
                                                                                            counter.owner)
    for unit, used, limit in (("tokens", stored["tokens"], token_limit),
                              ("usd", to_usd(stored["costUnits"]), usd_limit)):
        if limit is not None:
            queue_crossings(db, {"key": counter.owner, "label": label}, counter.window, counter.period, unit, used,
                            limit, ticket["thresholds"], now, window_key=counter.key)


def _exceeded(db, key, scope, window, token_limit, cost_limit, tokens, cost_units, resets_at, now):
    # Read after the refusal: other requests may have settled or released since, so neither limit
    # need be over now. The token limit is named when it is over or when there is no USD limit.
    counter = repository.get_counter(db, key)
    if token_limit is not None and (counter["tokens"] + tokens > token_limit or cost_limit is None):
        unit, limit, used = "tokens", token_limit, counter["tokens"]
    else:
        unit, limit, used = "usd", to_usd(cost_limit), to_usd(counter["costUnits"])
    resets = format_utc(resets_at)
    retry_after = max(1, math.ceil((resets_at - now).total_seconds()))
    return BudgetExceeded(
        f"Budget exceeded: {used} of {limit} {unit} of {WHOSE[scope]} {window} budget used (this request may "
        f"need {tokens if unit == 'tokens' else to_usd(cost_units)} more); resets at {resets}",
        data={"scope": scope, "limit": limit, "used": used, "unit": unit, "window": window, "resetsAt": resets},
        headers={"Retry-After": str(retry_after)},
    )


def _limited(caller, limits, now):
    """[(counter, token limit, cost limit)] of the caller's counters that have a limit: those a
    reservation adds to."""
    limited = []
    for counter in counters(caller_owners(caller), now, caller.time_zone):
        token_limit, cost_limit = _window_limits(limits[counter.scope], counter.window)
        if token_limit is not None or cost_limit is not None:
            limited.append((counter, token_limit, cost_limit))
    return limited


def planned(caller, tokens, cost_usd, now):
    """{counter key: [tokens, cost units]}: what `reserve` would add (the spool notes it first, so
    the reservation of a process that dies before its call records anything can be given back:
    give_back_abandoned)."""
    return {counter.key: [tokens, to_units(cost_usd)] for counter, _, _ in _limited(caller, scoped_limits(caller), now)}


def give_back_abandoned(db, reservations):
    """The ledger writer's listener for reservations whose process died before its call was made:
    [{"callId", "reserved": {key: [tokens, units]}}], each given back once where it was taken."""
    for reservation in reservations:
        for key, (tokens, units) in reservation["reserved"].items():
            repository.give_back(db, key, tokens, units, reservation["callId"])
    log.warning("Gave back the budget reservations of %d call(s) never made (their process died first): %s",
                len(reservations), ", ".join(r["callId"] for r in reservations))


def reserve(db, caller, tokens, cost_usd, now, policy=Policy(), priced=True, model=None, reservation_id=""):
    """Reserve a worst case on every counter of the caller, their team, organization and key that
    has a limit, all or nothing, or raise BudgetExceeded. `now` is when the call is made. A USD
    limit cannot bind a model without a price, so such a request is refused (422). The counters
    remember `reservation_id` (the call's id), so it is given back at most once."""
    limits = scoped_limits(caller)
    if not priced and any(window_limits_usd(limits[scope], window)[1] is not None
                          for scope in SCOPES for window in WINDOWS):
        raise UnprocessableEntity(
            f"Model {model!r} has no known price, and a USD budget applies to you, your team or your "
            "organization: add its price to PRICING_FILE or choose a priced model",
            errors={"model": ["No price is known for this model; a USD budget applies."]},
        )
    reservation = Reservation(db, policy, reservation_id, tokens, to_units(cost_usd), limits=limits,
                              labels=_labels(caller), rule=caller.time_zone)
    for counter, token_limit, cost_limit in _limited(caller, limits, now):
        try:
            taken = repository.try_add(db, counter.key, counter.fields(), tokens, reservation.cost_units, token_limit,
                                       cost_limit, _opening(db, counter), reservation_id)
        except PyMongoError:
            _give_back(reservation)
            raise
        if not taken:
            reservation.release()
            raise _exceeded(db, counter.key, counter.scope, counter.window, token_limit, cost_limit, tokens,
                            reservation.cost_units, counter.resets_at, now)
        reservation.reserved[counter.key] = counter.fields()
    return reservation


def _give_back(reservation):
    """A database error part-way through: what was reserved so far is given back, if it can be."""
    try:
        reservation.release()
    except PyMongoError:
        log.exception("Releasing a partial reservation failed: counters %s keep it until their window ends",
                      ", ".join(reservation.reserved))


def add_global_spend(db, cost_usd, now, batch):
    """The whole service's spend today (for the optional global daily limit alert), once per batch."""
    counter = global_day(now)
    return repository.add_once(db, counter.key, counter.fields(), 0, to_units(cost_usd), batch)


def usage_report(db, caller, now):
    """What /api/me/usage shows: limits, usage and what is left. Usage is the budget counter
    (requests in flight included); before the window's first request, what the ledger holds."""
    limits = scoped_limits(caller)["user"]
    report = []
    for window in WINDOWS:
        token_limit, cost_limit = _window_limits(limits, window)
        mine = BudgetCounter.of("user", caller.id, window, now, caller.time_zone)
        counter = repository.get_counter(db, mine.key, None)
        if counter is None:
            ledger_tokens, ledger_cost = _ledger_totals(db, mine)
            counter = {"tokens": ledger_tokens, "costUnits": to_units(ledger_cost)}
        report.append({
            "window": window,
            "period": mine.period,
            "timeZone": mine.zone_name,
            "startsAt": mine.starts_at,
            "resetsAt": mine.resets_at,
            # In the zone in effect when it resets (after a change: the new one, at its midnight).
            "resetsAtLocal": mine.resets_at.astimezone(zone(caller.time_zone.name_at(mine.resets_at))).isoformat(),
            "limits": {"tokens": token_limit, "usd": to_usd(cost_limit) if cost_limit is not None else None},
            "used": {"tokens": counter["tokens"], "usd": to_usd(counter["costUnits"])},
            "remaining": {
                "tokens": max(0, token_limit - counter["tokens"]) if token_limit is not None else None,
                "usd": max(0.0, to_usd(cost_limit - counter["costUnits"])) if cost_limit is not None else None,
            },
        })
    return report


def on_team_deleted(team_id, *, db):
    """A deleted team's budget goes with it."""
    repository.delete_budget(db, team_id)


def list_budgets(db, kind, scope):
    """Budgets of one kind (user, team, org, key), by owner, in the admin's scope: an organization
    admin's are those of their organization (its own, its teams', its keys', its current members'),
    none of a platform admin's."""
    if scope.platform:
        return repository.list_budgets(db, kind) if kind != "user" else repository.list_user_budgets(db)
    if kind == "user":
        return repository.list_user_budgets(db, [i for i in ids_in_org(db, scope.org_id)
                                                 if i not in scope.hidden_users])
    budgets = repository.list_budgets(db, kind, scope.org_id)
    if kind == "key":
        # Only the budgets of keys in use, none of a platform admin's.
        owners = {key["_id"]: key["userId"] for key in keys_of(db, [budget["_id"] for budget in budgets])
                  if key.get("revokedAt") is None}
        budgets = [budget for budget in budgets
                   if budget["_id"] in owners and owners[budget["_id"]] not in scope.hidden_users]
    return budgets


def _may_change(scope, admin_id, whose):
    if not scope.platform and whose == admin_id:
        raise Forbidden("An organization admin cannot change their own budget (or their keys'): a platform "
                        "admin does")


def set_budget(db, scope, admin_id, owner, owner_fields, limits, now, whose=None):
    """Set a budget's limits. A platform admin's limits become its ceiling: an organization admin
    may then tighten them (each limit present and no higher) but not loosen or remove them, and
    never changes a budget of their own (or of their keys)."""
    _may_change(scope, admin_id, whose)
    existing = repository.find_budget(db, owner) or {}
    if scope.platform:
        ceiling = {name: value for name, value in limits.items() if value is not None}
    else:
        ceiling = existing.get("ceiling") or None
        loosened = [name for name, value in (ceiling or {}).items() if limits.get(name) is None or limits[name] > value]
        if loosened:
            raise Forbidden(
                f"A platform admin set this budget: an organization admin may tighten it, not loosen or remove "
                f"{', '.join(sorted(loosened))} (at most {', '.join(f'{n}={ceiling[n]}' for n in sorted(loosened))})",
                data={"ceiling": ceiling})
    return repository.put_budget(db, owner, limits, now, admin_id, owner_fields,
                                 set_by=PLATFORM if scope.platform else ORGANIZATION, ceiling=ceiling)


def remove_budget(db, scope, admin_id, owner, whose=None):
    """Delete a budget (False when there is none); an organization admin cannot remove one a
    platform admin set, nor their own."""
    _may_change(scope, admin_id, whose)
    existing = repository.find_budget(db, owner)
    if existing is not None and not scope.platform and existing.get("ceiling"):
        raise Forbidden("A platform admin set this budget: an organization admin may tighten it, not remove it",
                        data={"ceiling": existing["ceiling"]})
    return repository.delete_budget(db, owner)


def guard_team_deletion(team_id, *, db, scope):
    """orgs asks before an organization admin deletes a team: a team whose budget a platform admin
    set keeps it (deleting the team would lift the ceiling)."""
    budget = repository.get_budget(db, team_id, "team")
    if not scope.platform and budget is not None and budget.get("ceiling"):
        raise Forbidden("A platform admin set this team's budget: only a platform admin deletes the team",
                        data={"ceiling": budget["ceiling"]})


def _budget_owner(db, kind, budget):
    """(organization id, label) of a budget's owner, for its zone and its alerts; None when gone."""
    if kind == "user":
        user = find_by_id(db, budget["_id"])
        return (org_of(user), user["email"]) if user else None
    if kind == "team":
        team = find_team(db, budget["_id"])
        return (team["orgId"], f"Team {team['name']}") if team else None
    if kind == "org":
        org = find_org(db, budget["_id"])
        return (org["_id"], org["name"]) if org else None
    keys = keys_of(db, [budget["_id"]])
    return (budget.get("orgId"), f"API key {keys[0]['name']}") if keys else None


def _rounded(unit, amount):
    return round(amount) if unit == "tokens" else round(amount, 6)


def queue_projected_crossings(db, now):
    """The background pass: an alert for every user, team, organization and key budget whose month
    (in its organization's zone) is on pace to cross a monthly limit, naming the local day it is
    expected to (admin.services.PROJECTION_METHOD: the month so far, its counter, plus the last 7
    whole local days' daily average for the rest). Queued once per month, limit and unit. Users
    bound only by the default budget are not projected (one check per user of the platform)."""
    queued = 0
    budgets = [("user", budget) for budget in repository.list_user_budgets(db)]
    budgets += [(kind, budget) for kind in ("team", "org", "key") for budget in repository.list_budgets(db, kind)]
    for kind, budget in budgets:
        token_limit, usd_limit = window_limits_usd(_limits(budget), "month")
        owner = _budget_owner(db, kind, budget) if (token_limit, usd_limit) != (None, None) else None
        if owner is None:
            continue
        org_id, label = owner
        counter = BudgetCounter.of(kind, budget["_id"], "month", now, zone_rule(db, org_id))
        tz = zone(counter.zone_name)
        stored = repository.get_counter(db, counter.key, None)
        if stored is None:
            tokens, cost = _ledger_totals(db, counter)
        else:
            tokens, cost = stored["tokens"], to_usd(stored["costUnits"])
        today = local_date(now, tz)
        week = period_totals(db, kind, budget["_id"], "day", None,
                             (day_start(today - timedelta(days=TRAILING_DAYS), tz), day_start(today, tz)))
        projected, average, _ = project({"tokens": tokens, "cost": cost}, {"tokens": week[0], "cost": week[1]}, now,
                                        counter.resets_at)
        for unit, measure, limit in (("tokens", "tokens", token_limit), ("usd", "cost", usd_limit)):
            used = tokens if unit == "tokens" else cost
            day = crossing_day(used, average[measure], limit, now, counter.resets_at, tz)
            if day is not None and queue_projected_crossing(db, {"key": counter.owner, "label": label}, counter.key,
                                                            counter.period, unit, _rounded(unit, projected[measure]),
                                                            limit, day, counter.zone_name, now):
                queued += 1
    return queued
