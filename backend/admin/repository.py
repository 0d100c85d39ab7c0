"""Reads of the usage ledger and its rollups for the admin views; ledger records come back
with_defaults, so a record stored before a field existed reads like a new one."""
from datetime import date, timedelta

from pymongo import ASCENDING, DESCENDING

from backend.admin.pipelines import RAW, match
from backend.db import USAGE, USAGE_USER_MONTHLY
from backend.timezones import day_bounds, is_utc
from backend.usage.model import F, with_defaults

EXPORT_BATCH = 1000
WALKED_DAYS = 366


def user_has_records(db, user_id, org_id=None):
    """Whether the ledger holds calls of the user (made in org_id, when given)."""
    query = {F.USER_ID: user_id} if org_id is None else {F.USER_ID: user_id, F.ORG_ID: org_id}
    return any(db[name].find_one(query, {"_id": 1}) for name in (USAGE_USER_MONTHLY, USAGE))


def ranged(start, end, filters, tz=None):
    """The ledger query of active records matching the filters in the days [start, end]: UTC days
    by their `date`, a zone's local days by their timestamp."""
    if is_utc(tz):
        return match(RAW, start, end, filters)["$match"]
    query = match(RAW, None, None, filters)["$match"]
    low, high = day_bounds(start, end, tz)
    if low or high:
        query[F.TIMESTAMP] = {**({"$gte": low} if low else {}), **({"$lt": high} if high else {})}
    return query


def ledger_page(db, filters, skip, limit, start=None, end=None, tz=None):
    """Active ledger records matching the filters, newest first."""
    query = ranged(start, end, filters, tz)
    total = db[USAGE].count_documents(query)
    cursor = (
        db[USAGE].find(query).sort([(F.TIMESTAMP, DESCENDING), (F.ID, DESCENDING)]).skip(skip).limit(limit)
    )
    return [with_defaults(record) for record in cursor], total


def each_day(first, last):
    """Every date from first to last inclusive; by ordinal, so 9999-12-31 ends it without overflow."""
    for ordinal in range(first.toordinal(), last.toordinal() + 1):
        yield date.fromordinal(ordinal)


def _edge_date(db, query, direction):
    edge = db[USAGE].find_one(query, {F.DATE: 1, F.ID: 0}, sort=[(F.DATE, direction)])
    return date.fromisoformat(edge[F.DATE]) if edge else None


def export_records(db, filters, start=None, end=None, tz=None):
    """Active ledger records in date order, read one UTC day at a time in batches, so the
    memory used stays that of one day's batch however many rows the range holds. A range longer
    than WALKED_DAYS (or open) is first narrowed to the days of the first and last matching
    records, so 0001-01-01..9999-12-31 is not 3.65M lookups; a shorter one is walked as given.
    In a zone, the local days' UTC days are walked and each record kept by its timestamp."""
    query = ranged(start, end, filters, tz)
    first, last = start, end
    if not is_utc(tz):
        low, high = day_bounds(start, end, tz)
        first = low.date() if low else None
        last = (high - timedelta(microseconds=1)).date() if high else None
    if first is None or last is None or (last - first).days >= WALKED_DAYS:
        first, last = _edge_date(db, query, ASCENDING), _edge_date(db, query, DESCENDING)
        if first is None:
            return
    for day in each_day(first, last):
        cursor = db[USAGE].find({**query, F.DATE: day.isoformat()}).sort(F.ID, ASCENDING).batch_size(EXPORT_BATCH)
        yield from map(with_defaults, cursor)
