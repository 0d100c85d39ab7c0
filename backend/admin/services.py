"""Admin analytics over the usage ledger and its rollups.

`source` is "rollup" (what the API uses) or "raw" (the ledger itself, for
verification and the benchmark); both answer every question identically.
"""
import math
from datetime import date, timedelta

from backend.admin import pipelines, repository, sources
from backend.auth.caller import Scope, org_of
from backend.auth.repository import find_by_id
from backend.errors import NotFound, UnprocessableEntity
from backend.orgs import services as orgs
from backend.pricing.services import COST_DECIMALS
from backend.timezones import ZoneRule, local_date, window_bounds
from backend.usage.model import F, OK
from backend.usage.rollups import EVERY_CALL, TAG

TOTAL_FIELDS = (*pipelines.SUMMED_FIELDS, "totalCost", "totalRequests")
EMPTY_TOTALS = {**{field: 0 for field in pipelines.SUMMED_FIELDS}, "totalCost": 0.0, "totalRequests": 0}
DEFAULT_SERIES_DAYS = 30
MAX_PERIODS = 1000
OTHER = "other"


def _totals(row):
    """The summed fields of a row, cost rounded back to the ledger's exact precision."""
    totals = {field: row.get(field, 0) for field in TOTAL_FIELDS}
    totals["totalCost"] = round(totals["totalCost"], COST_DECIMALS)
    return totals


def _grouped(db, source, fields, start=None, end=None, filters=None, tz=None):
    """Totals per distinct value of `fields` from the smallest source that can answer (sources.py),
    over the local days [start, end] of `tz` (None: UTC days)."""
    return sources.grouped(db, sources.choose(source, fields, filters), fields, start, end, filters, tz)


def _sort_key(value):
    return (value is None, str(value))


def _largest_first(rows, fields):
    return sorted(rows, key=lambda row: (-row["totalTokens"], *(_sort_key(row["_id"].get(f)) for f in fields)))


def by_outcome(db, start=None, end=None, source="rollup", filters=None, tz=None):
    """What the calls of each outcome cost: failed calls are billed too (ok first, then by cost)."""
    items = [{"outcome": row["_id"].get(F.OUTCOME), **_totals(row)}
             for row in _grouped(db, source, (F.OUTCOME,), start, end, filters, tz)]
    return sorted(items, key=lambda item: (item["outcome"] != OK, -item["totalCost"], str(item["outcome"])))


def _per_user(db, start, end, source, filters, tz=None):
    """Rows of totals per user (with userEmail) of the users with requests in the range."""
    return [row for row in _grouped(db, source, (F.USER_ID,), start, end, filters, tz) if row["totalRequests"]]


def dashboard(db, start=None, end=None, source="rollup", filters=None, tz=None):
    """Totals and unique users, with what the calls of each outcome cost (`byOutcome`) and what
    the calls of failed requests cost (`failedCost`, `failedRequests`)."""
    outcomes = by_outcome(db, start, end, source, filters, tz)
    failed = [item for item in outcomes if item["outcome"] != OK]
    users = _per_user(db, start, end, source, filters, tz)
    overall = {}
    for row in users:
        _add(overall, row)
    return {**_totals(overall), "uniqueUsers": len(users), "byOutcome": outcomes,
            "failedCost": round(sum(item["totalCost"] for item in failed), COST_DECIMALS),
            "failedRequests": sum(item["totalRequests"] for item in failed)}


def top_users(db, limit, start=None, end=None, source="rollup", filters=None, scope=Scope(), tz=None):
    rows = [row for row in _per_user(db, start, end, source, filters, tz)
            if row["_id"][F.USER_ID] not in scope.hidden_users]
    ranked = _largest_first(rows, (F.USER_ID,))[:limit]
    return [{"_id": row["_id"][F.USER_ID], "userEmail": row[F.USER_EMAIL], **_totals(row)} for row in ranked]


def require_known_user(db, user_id, scope=Scope()):
    """A user who exists or has records; for an organization admin, one who is in their
    organization or has records made in it. Anyone else is a 404."""
    if user_id in scope.hidden_users:
        raise NotFound(f"User {user_id} not found")
    user = find_by_id(db, user_id)
    if user is not None and scope.sees(org_of(user)):
        return
    if not repository.user_has_records(db, user_id, scope.org_id):
        raise NotFound(f"User {user_id} not found")


def confine(db, scope, filters):
    """An admin query's filters inside the admin's scope: an organization admin's are pinned to
    their organization, and an organization, team or user outside the scope is a 404."""
    if filters.get(F.ORG_ID) is not None:
        orgs.require_org(db, scope, filters[F.ORG_ID])
    if filters.get(F.TEAM_ID) is not None:
        orgs.require_team(db, scope, filters[F.TEAM_ID])
    if filters.get(F.USER_ID) is not None and not scope.platform:
        require_known_user(db, filters[F.USER_ID], scope)
    return filters if scope.platform else {**filters, F.ORG_ID: scope.org_id}


def user_stats(db, user_id, start=None, end=None, source="rollup", filters=None, scope=Scope(), tz=None):
    require_known_user(db, user_id, scope)
    rows = _grouped(db, source, (), start, end, {**(filters or {}), F.USER_ID: user_id}, tz)
    return _totals(rows[0]) if rows else dict(EMPTY_TOTALS)


def user_history(db, user_id, page, limit, start=None, end=None, filters=None, scope=Scope(), tz=None):
    require_known_user(db, user_id, scope)
    records, total = repository.ledger_page(db, {**(filters or {}), F.USER_ID: user_id}, (page - 1) * limit, limit,
                                            start, end, tz)
    return {"data": records, "total": total, "page": page, "limit": limit, "totalPages": math.ceil(total / limit)}


def breakdown(db, by, start=None, end=None, filters=None, source="rollup", tz=None):
    """Totals per model, provider, operation, outcome, org, team (with each one's name as
    `label`) or tag (a call counts under each of its tags); `filters` narrows by userId,
    operation, provider, outcome, orgId, teamId, tag."""
    fields = (F.PROVIDER, F.MODEL_NAME) if by == "model" else (pipelines.GROUP_FIELDS[by],)
    rows = _largest_first(_grouped(db, source, fields, start, end, filters, tz), fields)
    grand_total = sum(row["totalTokens"] for row in rows)
    if by == "tag":
        # A share of every call's tokens, tagged or not; a call with several tags counts under each.
        # The tag rollups count every call once more under EVERY_CALL (the ledger has no such row).
        every_call = [row for row in rows if row["_id"].get(TAG, EVERY_CALL) is EVERY_CALL]
        rows = [row for row in rows if row not in every_call]
        if (filters or {}).get(TAG) is not None:
            grand_total = sum(row["totalTokens"] for row in rows)
        elif every_call:
            grand_total = sum(row["totalTokens"] for row in every_call)
        else:
            grand_total = sum(row["totalTokens"] for row in _grouped(db, source, (), start, end, filters, tz))
    names = orgs.labels(db, by, [row["_id"].get(fields[-1]) for row in rows]) if by in ("org", "team") else {}
    result = []
    for row in rows:
        key = row["_id"].get(fields[-1])
        item = {"key": str(key) if key is not None else None, **_totals(row)}
        if by == "model":
            item["provider"] = row["_id"][F.PROVIDER]
        if by in ("org", "team"):
            item["label"] = names.get(key, "(no team)" if key is None else str(key))
        item["share"] = round(row["totalTokens"] / grand_total, 6) if grand_total else 0.0
        result.append(item)
    return result


def _period(day, bucket):
    if bucket == "week":
        return (day - timedelta(days=day.weekday())).isoformat()
    if bucket == "month":
        return f"{day.year:04d}-{day.month:02d}"  # strftime writes year 1 as "1"
    return day.isoformat()


def series_range(start, end, today):
    """Defaults: the 30 days up to today, or 30 days from/to the one bound given."""
    if start is None and end is None:
        end = today
    # Ordinals, clamped to the calendar: near 0001-01-01 or 9999-12-31 the default 30 days are cut
    # short rather than overflowing.
    if start is None:
        start = date.fromordinal(max(1, end.toordinal() - DEFAULT_SERIES_DAYS + 1))
    if end is None:
        end = date.fromordinal(min(date.max.toordinal(), start.toordinal() + DEFAULT_SERIES_DAYS - 1))
    return start, end


def periods_between(start, end, bucket):
    periods = []
    for day in repository.each_day(start, end):
        period = _period(day, bucket)
        if not periods or periods[-1] != period:
            periods.append(period)
    return periods


def _add(target, row):
    for field in TOTAL_FIELDS:
        target[field] = target.get(field, 0) + row.get(field, 0)


def timeseries(db, bucket, group_by, start, end, today, filters=None, series_limit=10, source="rollup",
               scope=Scope(), tz=None):
    """Buckets of tokens by kind, cost and requests; empty buckets are zeros.

    With a groupBy, the `series_limit` largest series are kept and the rest summed as "other"; a
    user the scope hides (a platform admin, for an organization admin) is never a series of their
    own: their calls count in "other".
    """
    start, end = series_range(start, end, today)
    if (end - start).days + 1 > MAX_PERIODS * (7 if bucket == "week" else 31 if bucket == "month" else 1):
        raise UnprocessableEntity(f"The range is too long for {bucket} buckets", errors={"endDate": ["Too far."]})
    field = pipelines.GROUP_FIELDS.get(group_by)
    rows = _grouped(db, source, (F.DATE, field) if field else (F.DATE,), start, end, filters, tz)
    periods = periods_between(start, end, bucket)

    series, hidden = {}, []
    for row in rows:
        key = str(row["_id"].get(field)) if field else "all"
        if field == F.USER_ID and row["_id"].get(field) in scope.hidden_users:
            key = OTHER
        entry = series.setdefault(key, {"key": key, "label": row.get("userEmail") or key, "totals": {}, "points": {}})
        _add(entry["totals"], row)
        _add(entry["points"].setdefault(_period(date.fromisoformat(row["_id"][F.DATE]), bucket), {}), row)
    if OTHER in series:
        hidden = [series.pop(OTHER)]

    ranked = sorted(series.values(), key=lambda s: (-s["totals"]["totalTokens"], s["key"]))
    if hidden or (group_by != "none" and len(ranked) > series_limit):
        other = {"key": OTHER, "label": OTHER, "totals": {}, "points": {}}
        for entry in ranked[series_limit:] + hidden:
            _add(other["totals"], entry["totals"])
            for period, point in entry["points"].items():
                _add(other["points"].setdefault(period, {}), point)
        ranked = ranked[:series_limit] + [other]
    if not ranked and group_by == "none":
        ranked = [{"key": "all", "label": "all", "totals": {}, "points": {}}]

    return {
        "bucket": bucket,
        "groupBy": group_by,
        "startDate": start.isoformat(),
        "endDate": end.isoformat(),
        "periods": periods,
        "series": [
            {
                "key": entry["key"],
                "label": entry["label"],
                "totals": _totals(entry["totals"]),
                "points": [{"period": p, **_totals(entry["points"].get(p, {}))} for p in periods],
            }
            for entry in ranked
        ],
    }


# The month-end projection: the month so far plus the trailing week's daily average for the rest.
TRAILING_DAYS = 7
PROJECTION_METHOD = ("month so far + (tokens and cost of the last 7 whole local days / 7) x the days left in the "
                     "local month (from now to its end, in days with a fraction)")


def project(month_to_date, trailing_week, now, month_end):
    """(projected {tokens, cost}, daily average, days left) from the month's totals so far and the
    trailing week's ({tokens, cost} each), by PROJECTION_METHOD."""
    days_left = max(0.0, (month_end - now).total_seconds() / 86400)
    average = {unit: trailing_week[unit] / TRAILING_DAYS for unit in ("tokens", "cost")}
    projected = {unit: month_to_date[unit] + average[unit] * days_left for unit in ("tokens", "cost")}
    return projected, average, days_left


def crossing_day(used, per_day, limit, now, month_end, tz):
    """The local day the limit is reached at `per_day`, when that is before the month ends; else None."""
    if limit is None or used >= limit or per_day <= 0:
        return None
    reached = now + timedelta(days=(limit - used) / per_day)
    return reached.astimezone(tz).date() if reached < month_end else None


def projection(db, filters, tz, now):
    """Where the local month of `tz` is heading for the calls `filters` select (PROJECTION_METHOD)."""
    today, month = local_date(now, tz), window_bounds("month", now, ZoneRule.always(tz.key))
    first, month_end = local_date(month.start, tz), month.end

    def totals(start, end):
        rows = _grouped(db, "rollup", (), start, end, filters, tz)
        row = rows[0] if rows else {}
        return {"tokens": row.get("totalTokens", 0), "cost": row.get("totalCost", 0.0)}

    month_to_date = totals(first, today)
    trailing = totals(today - timedelta(days=TRAILING_DAYS), today - timedelta(days=1))
    projected, average, days_left = project(month_to_date, trailing, now, month_end)
    return {
        "month": first.isoformat()[:7], "timeZone": tz.key, "monthEnd": month_end,
        "monthToDate": {"tokens": month_to_date["tokens"], "cost": round(month_to_date["cost"], COST_DECIMALS)},
        "dailyAverage": {"tokens": round(average["tokens"], 2), "cost": round(average["cost"], COST_DECIMALS)},
        "daysLeft": round(days_left, 4),
        "projected": {"tokens": round(projected["tokens"]), "cost": round(projected["cost"], COST_DECIMALS)},
        "method": PROJECTION_METHOD,
    }


def listed(filters, scope):
    """Filters for views that list records one by one: none of a user the scope hides."""
    if not scope.hidden_users or filters.get(F.USER_ID) is not None:
        return filters
    return {**filters, F.USER_ID: {"$nin": sorted(scope.hidden_users)}}


def usage_logs(db, filters, limit, offset, start=None, end=None, source="rollup", scope=Scope(), tz=None):
    """Seed 002's usage logs: a page of ledger records (none of a user the scope hides) plus
    statistics per operation."""
    records, total = repository.ledger_page(db, listed(filters, scope), offset, limit, start, end, tz)
    rows = sorted(_grouped(db, source, (F.OPERATION,), start, end, filters, tz),
                  key=lambda row: row["_id"][F.OPERATION])
    stats = [
        {
            "operation": row["_id"][F.OPERATION],
            "totalTokens": row[F.TOTAL_TOKENS],
            "inputTokens": row[F.PROMPT_TOKENS],
            "outputTokens": row[F.COMPLETION_TOKENS],
            "totalRequests": row["totalRequests"],
            "totalCost": round(row["totalCost"], COST_DECIMALS),
        }
        for row in rows
    ]
    return {"data": records, "total": total, "limit": limit, "offset": offset, "stats": stats}
