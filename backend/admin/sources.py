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

In a time zone other than UTC (`tz`), days are the zone's local days: a rollup's quarter-hour
slots of the UTC days the range touches are summed onto the local day each falls on
(backend/timezones.py), and the ledger is grouped by each record's local day here. A range whose
local midnights fall inside a slot (a historical offset) is answered from the ledger.
"""
from datetime import date, datetime, timedelta, timezone

from backend.admin.pipelines import RAW, date_range, group_pipeline, match
from backend.db import USAGE
from backend.timezones import SLOTS_PER_DAY, Slots, aware, day_bounds, is_utc, local_date, slot_name
from backend.usage.model import F
from backend.usage.rollups import COUNTED, REQUESTS, ROLLUP_BY_NAME, ROLLUPS, SLOTS, SUMS, TAG

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


def grouped(db, source, fields, start=None, end=None, filters=None, tz=None):
    """[{"_id": {field: value, ...}, totalTokens, promptTokens, ..., totalCost, totalRequests}], one
    row per distinct value of `fields` among the source's calls in the days [start, end] (local
    days of `tz`; None: UTC) matching `filters`; rows grouped by userId also carry the user's
    `userEmail`."""
    if not is_utc(tz):
        return _local_rows(db, source, fields, start, end, filters, tz)
    rollup = ROLLUP_BY_NAME.get(source)
    if rollup is not None and rollup.per_day:
        return _per_day_rows(db, rollup, fields, start, end, filters)
    if rollup is not None:
        return _daily_rows(db, rollup, fields, start, end, filters)
    return list(db[COLLECTIONS[source]].aggregate(group_pipeline(source, fields, start, end, filters),
                                                  allowDiskUse=True))


class _Groups:
    """Rows of totals per distinct value of the grouped fields (with the user's email when by user)."""

    def __init__(self, fields):
        self.fields = fields
        self.rows = {}

    def add(self, values, sums, email=None):
        row = self.rows.get(tuple(values.values()))
        if row is None:
            row = self.rows[tuple(values.values())] = {"_id": values, **dict.fromkeys(TOTALS, 0)}
        for total, field in TOTALS.items():
            row[total] += sums.get(field, 0)
        if F.USER_ID in self.fields:
            row[F.USER_EMAIL] = max(row.get(F.USER_EMAIL) or "", email or "")


def _daily_rows(db, rollup, fields, start, end, filters):
    """A daily rollup's documents in the range, their day sums (not their slots) grouped here: an
    aggregation would copy every document whole, slots and all, on the embedded store."""
    projection = {"_id": 0, **{field: 1 for field in (*fields, *COUNTED)}}
    if F.USER_ID in fields:
        projection[F.USER_EMAIL] = 1
    groups = _Groups(fields)
    for document in db[rollup.collection].find(match(rollup.name, start, end, filters)["$match"], projection):
        groups.add({field: document.get(field) for field in fields}, document, document.get(F.USER_EMAIL))
    return list(groups.rows.values())


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
    groups = _Groups(fields)
    for document in db[rollup.collection].find(month_query(start, end, filters), projection):
        values = {field: document.get(field) for field in names}
        for day, sums in document.get("days", {}).items():
            if (first is not None and day < first) or (last is not None and day > last):
                continue
            groups.add({**values, F.DATE: day} if F.DATE in fields else values, sums, document.get(F.USER_EMAIL))
    return list(groups.rows.values())


class _Unaligned(Exception):
    """A local midnight falls inside a quarter-hour slot: only the ledger can tell its days apart."""


def _local_rows(db, source, fields, start, end, filters, tz):
    if source != RAW:
        try:
            return _local_rollup_rows(db, ROLLUP_BY_NAME[source], fields, start, end, filters, tz)
        except _Unaligned:
            pass
    return _local_ledger_rows(db, fields, start, end, filters, tz)


def _utc_days(start, end, tz):
    """The UTC days the local days [start, end] touch (None where open)."""
    low, high = day_bounds(start, end, tz)
    return (low.date() if low else None), ((high - timedelta(microseconds=1)).date() if high else None)


def _local_rollup_rows(db, rollup, fields, start, end, filters, tz):
    """A rollup's sums in the local days [start, end]. Grouped by day, every UTC day is split by its
    slots; otherwise only the first and last UTC days are (the days between lie wholly inside the
    range: their day sums count). A UTC day a local midnight splits inside a slot is read from the
    ledger instead (tag rollups, which count every call once more, are then read from it whole)."""
    first, last = _utc_days(start, end, tz)
    by_day = F.DATE in fields
    edges = sorted({day.isoformat() for day in (first, last) if day is not None})
    names = [field for field in fields if field != F.DATE]
    keep = {"_id": 0, **{field: 1 for field in names}, **({F.USER_EMAIL: 1} if F.USER_ID in fields else {})}
    groups, slots_of, unaligned = _Groups(fields), Slots(tz), set()

    def inside(day):
        return (first is None or day > first.isoformat()) and (last is None or day < last.isoformat())

    def add_slots(document, day, slots):
        if (first is not None and day < first.isoformat()) or (last is not None and day > last.isoformat()):
            return
        local_days = slots_of.local_days(date.fromisoformat(day))
        if local_days is None:
            unaligned.add(day)
            return
        values = {field: document.get(field) for field in names}
        for slot, sums in slots.items():
            local = local_days[int(slot)]
            if (start is None or local >= start) and (end is None or local <= end):
                group = {**values, F.DATE: local.isoformat()} if by_day else values
                groups.add(group, sums, document.get(F.USER_EMAIL))

    def add_day(document, sums):
        groups.add({field: document.get(field) for field in names}, sums, document.get(F.USER_EMAIL))

    splits = _splits(first, last, slots_of, unaligned) if by_day else None
    if splits is not None:
        _add_split_days(db, rollup, query_of(rollup, first, last, filters), keep, names, splits, start, end, groups)
    elif rollup.per_day:
        projection = {**keep, SLOTS: 1} if by_day else {**keep, "days": 1, **{f"{SLOTS}.{day}": 1 for day in edges}}
        for document in db[rollup.collection].find(month_query(first, last, filters), projection):
            for day, slots in document.get(SLOTS, {}).items():
                add_slots(document, day, slots)
            for day, sums in ({} if by_day else document.get("days", {})).items():
                if inside(day):
                    add_day(document, sums)
    else:
        collection, query = db[rollup.collection], match(rollup.name, first, last, filters)["$match"]
        split = query if by_day else {**query, F.DATE: {"$in": edges}}
        for document in collection.find(split, {**keep, F.DATE: 1, SLOTS: 1}):
            add_slots(document, document[F.DATE], document.get(SLOTS, {}))
        if not by_day:
            sums = {field: 1 for field in COUNTED}
            for document in collection.find({**query, F.DATE: {**query.get(F.DATE, {}), "$nin": edges}},
                                            {**keep, **sums}):
                add_day(document, document)
    if unaligned:
        if rollup.fan_out is not None:
            raise _Unaligned(sorted(unaligned))
        for day in sorted(unaligned):
            for row in _local_ledger_rows(db, fields, start, end, filters, tz, utc_day=date.fromisoformat(day)):
                groups.add(row["_id"], {**row, F.COST: row["totalCost"], REQUESTS: row["totalRequests"]},
                           row.get(F.USER_EMAIL))
    return list(groups.rows.values())


# A day-by-day view of more UTC days than this reads every slot instead of naming the few it needs.
MAX_SPLIT_DAYS = 400


class _Split:
    """How a UTC day's slots fall on local days: most of them on `major`, the fewer (`minor`, slot
    indices) on `minor_day`; with two local midnights in the day (a daylight-saving change), every
    slot is `minor` and read one by one (`local_days`)."""

    def __init__(self, local_days):
        self.local_days = local_days
        changes = [index for index in range(1, SLOTS_PER_DAY) if local_days[index] != local_days[index - 1]]
        if not changes:
            self.major, self.minor, self.minor_day = local_days[0], (), None
        elif len(changes) == 1 and changes[0] >= SLOTS_PER_DAY // 2:
            self.major, self.minor, self.minor_day = local_days[0], range(changes[0], SLOTS_PER_DAY), local_days[-1]
        elif len(changes) == 1:
            self.major, self.minor, self.minor_day = local_days[-1], range(changes[0]), local_days[0]
        else:
            self.major, self.minor, self.minor_day = None, range(SLOTS_PER_DAY), None
        self.minor_names = frozenset(slot_name(slot) for slot in self.minor)


def _splits(first, last, slots_of, unaligned):
    """{UTC day: _Split} of a bounded range (None when open or too long: every slot is read)."""
    if first is None or last is None or (last - first).days >= MAX_SPLIT_DAYS:
        return None
    splits = {}
    for ordinal in range(first.toordinal(), last.toordinal() + 1):
        day = date.fromordinal(ordinal)
        local_days = slots_of.local_days(day)
        if local_days is None:
            unaligned.add(day.isoformat())
        else:
            splits[day.isoformat()] = _Split(local_days)
    return splits


def query_of(rollup, first, last, filters):
    return month_query(first, last, filters) if rollup.per_day else match(rollup.name, first, last, filters)["$match"]


def _add_split_days(db, rollup, query, keep, names, splits, start, end, groups):
    """Each UTC day's sums onto its local days: its day sums less its minor slots on the major day,
    those slots on the minor day. Only the minor slots are summed (a UTC+5:30 day: 22 of 96), and a
    daily rollup's documents are read with those slots alone."""
    if rollup.per_day:
        # Whole fields: a projection naming the range's day and slot paths costs more than it saves.
        projection = {**keep, "days": 1, SLOTS: 1}
        rows = ((document, day, sums, document.get(SLOTS, {}).get(day, {}))
                for document in db[rollup.collection].find(query, projection)
                for day, sums in document.get("days", {}).items())
    else:
        minor = sorted({slot for split in splits.values() for slot in split.minor})
        projection = {**keep, F.DATE: 1, **{field: 1 for field in COUNTED},
                      **{f"{SLOTS}.{slot_name(slot)}": 1 for slot in minor}}
        rows = ((document, document[F.DATE], document, document.get(SLOTS, {}))
                for document in db[rollup.collection].find(query, projection))
    for document, day, sums, slots in rows:
        split = splits.get(day)
        if split is None:
            continue
        values = {field: document.get(field) for field in names}
        email = document.get(F.USER_EMAIL)

        def add(local, counts):
            if counts.get(REQUESTS) and (start is None or local >= start) and (end is None or local <= end):
                groups.add({**values, F.DATE: local.isoformat()}, counts, email)

        if split.major is None:
            for slot, counts in slots.items():
                add(split.local_days[int(slot)], counts)
            continue
        minor = dict.fromkeys(COUNTED, 0)
        for slot, counts in slots.items():  # the slots a document has (few), kept when on the minor side
            if slot in split.minor_names:
                for field, value in counts.items():
                    if field in minor:
                        minor[field] += value
        add(split.major, {field: sums.get(field, 0) - minor[field] for field in COUNTED})
        if split.minor_day is not None:
            add(split.minor_day, minor)


def _local_ledger_rows(db, fields, start, end, filters, tz, utc_day=None):
    """The ledger's records in the local days [start, end] (and in one UTC day, when given), grouped
    by `fields` (F.DATE: local day)."""
    low, high = day_bounds(start, end, tz)
    if utc_day is not None:
        midnight = datetime.combine(utc_day, datetime.min.time(), tzinfo=timezone.utc)
        following = midnight + timedelta(days=1)
        low, high = max(low or midnight, midnight), min(high or following, following)
    query = match(RAW, None, None, {name: value for name, value in (filters or {}).items() if name != TAG})["$match"]
    if (filters or {}).get(TAG) is not None:
        query[F.TAGS] = filters[TAG]
    if low or high:
        query[F.TIMESTAMP] = {**({"$gte": low} if low else {}), **({"$lt": high} if high else {})}
    names = [field for field in fields if field not in (F.DATE, TAG)]
    groups = _Groups(fields)
    wanted = {F.TIMESTAMP: 1, F.TAGS: 1, F.USER_EMAIL: 1, F.COST: 1, **{field: 1 for field in (*SUMS, *names)}}
    for record in db[USAGE].find(query, wanted):
        stamp = aware(record[F.TIMESTAMP])
        values = {field: record.get(field) for field in names}
        if F.DATE in fields:
            values[F.DATE] = local_date(stamp, tz).isoformat()
        sums = {**{field: record.get(field, 0) for field in SUMS}, REQUESTS: 1}
        if TAG in fields:
            tags = record.get(F.TAGS) or []
            if (filters or {}).get(TAG) is not None:
                tags = [tag for tag in tags if tag == filters[TAG]]
            for tag in tags:
                groups.add({**values, TAG: tag}, sums, record.get(F.USER_EMAIL))
        else:
            groups.add(values, sums, record.get(F.USER_EMAIL))
    return list(groups.rows.values())
