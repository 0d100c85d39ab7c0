"""Which source answers an admin view, and reading it as grouped totals.

Every view asks the same kind of question: totals over a range of UTC days, narrowed by equality
filters (userId, provider, orgId, tag, ...) and grouped by some fields (none, `outcome`,
`userId`, `date` for time series, ...). The ledger (RAW) answers any of them; a rollup answers
those whose filters and groups are all in its key. `choose` picks the first rollup of the
registry that can (the registry lists them smallest first), so a platform-wide view reads the
small `daily_totals`, an organization's view `org_monthly`, a tag's view `tag_monthly`, and a
question about users the user-month rollups. A rollup that counts a call once per element of a
list (per tag) answers only views about that list's field.

Daily rollups and the ledger are read with one $match/$group pipeline. Monthly rollups (one
document a month, sums per day) are read with a find of the months the range touches and their
days inside it are summed here: mongomock's $unwind and $objectToArray copy whole documents per
element, and on MongoDB the indexed find reads the same documents.
"""
from backend.admin.pipelines import RAW, date_range, group_pipeline
from backend.db import USAGE
from backend.usage.model import F
from backend.usage.rollups import REQUESTS, ROLLUP_BY_NAME, ROLLUPS, SUMS

# The views' sources: the ledger and every rollup of the registry, by name.
COLLECTIONS = {RAW: USAGE, **{rollup.name: rollup.collection for rollup in ROLLUPS}}
DAY_FIELDS = (F.DATE, F.MONTH)
TOTALS = {"totalCost": F.COST, "totalRequests": REQUESTS,
          **{field: field for field in SUMS if field != F.COST}}


def _needed(fields, filters):
    return {*fields, *(field for field, value in (filters or {}).items() if value is not None)} - set(DAY_FIELDS)


def choose(source, fields, filters=None):
    """RAW when asked ("raw") or when no rollup holds every field needed; else the smallest rollup that does."""
    if source == RAW:
        return RAW
    needed = _needed(fields, filters)
    for rollup in ROLLUPS:
        if needed <= set(rollup.key) - set(DAY_FIELDS) and (rollup.fan_out is None or rollup.fan_out[1] in needed):
            return rollup.name
    return RAW


def grouped(db, source, fields, start=None, end=None, filters=None):
    """[{"_id": {field: value, ...}, totalTokens, promptTokens, ..., totalCost, totalRequests}], one
    row per distinct value of `fields` among the source's calls in [start, end] matching `filters`;
    rows grouped by userId also carry the user's `userEmail`."""
    rollup = ROLLUP_BY_NAME.get(source)
    if rollup is not None and rollup.per_day:
        return _per_day_rows(db, rollup, fields, start, end, filters)
    return list(db[COLLECTIONS[source]].aggregate(group_pipeline(source, fields, start, end, filters),
                                                  allowDiskUse=True))


def month_query(start=None, end=None, filters=None):
    """The find of a monthly rollup for the months the range touches. Whole months are read and
    the days inside the range kept by the reader: a projection naming each day would grow with
    the range (0001-01-01..9999-12-31 is 3.65M keys), while whole months cost what the data holds."""
    query = {field: value for field, value in (filters or {}).items() if value is not None}
    if start or end:
        query[F.MONTH] = {operator: day[:7] for operator, day in date_range(start, end).items()}
    return query


def _per_day_rows(db, rollup, fields, start, end, filters):
    first, last = (start.isoformat() if start else None), (end.isoformat() if end else None)
    names = [field for field in fields if field != F.DATE]
    projection = {"_id": 0, "days": 1, **{field: 1 for field in names}}
    if F.USER_ID in fields:
        projection[F.USER_EMAIL] = 1
    groups = {}
    for document in db[rollup.collection].find(month_query(start, end, filters), projection):
        values = {field: document.get(field) for field in names}
        for day, sums in document.get("days", {}).items():
            if (first is not None and day < first) or (last is not None and day > last):
                continue
            group = {**values, F.DATE: day} if F.DATE in fields else values
            row = groups.get(tuple(group.values()))
            if row is None:
                row = groups[tuple(group.values())] = {"_id": group, **dict.fromkeys(TOTALS, 0)}
            for total, field in TOTALS.items():
                row[total] += sums.get(field, 0)
            if F.USER_ID in fields:
                row[F.USER_EMAIL] = max(row.get(F.USER_EMAIL) or "", document.get(F.USER_EMAIL) or "")
    return list(groups.values())
