"""Rollups of the usage ledger, kept by $inc as records are written and rebuilt from it on demand.

Each rollup sums tokens, cost and requests of the active records sharing its key. Daily ones
hold one document per day; monthly ones one per month with the sums kept per day in
`days.<YYYY-MM-DD>` (about 30 times fewer documents to read for the same question). Each also
keeps the same sums per UTC quarter hour, `slots.<QQ>` (daily) or `slots.<YYYY-MM-DD>.<QQ>`
(monthly), QQ 00-95: the local days of any time zone are whole slots (backend/timezones.py).
- daily (openai_token_usage_daily): per (date, userId, provider, modelName, operation,
  outcome, orgId, teamId, apiKeyId): questions about users and models at once.
- daily_totals (openai_token_usage_daily_totals): per (date, provider, modelName, operation,
  outcome), no user and no organization: the platform-wide breakdowns, time series and usage
  statistics; bounded by days x models x operations x outcomes.
- org_monthly (openai_token_usage_org_monthly): the same per (orgId, month, teamId, ...) with
  per-day sums: the same views for one organization or team, or broken down by them.
- user_monthly (openai_token_usage_user_monthly): per (userId, month, orgId, teamId, apiKeyId).
  The dashboard, top users, user stats and the budget counters' openings read it: bounded by
  users x months (x the memberships and keys a user had in the month), whatever the number of calls.
- user_operation_monthly (openai_token_usage_user_operation_monthly): the same per
  (userId, month, provider, operation, orgId, teamId), for those views filtered by operation or provider.
- tag_monthly, org_tag_monthly and user_tag_monthly (openai_token_usage_<name>): a call counts
  once under each of its tags (not at all when it has none); per (tag, month, outcome) for the
  platform-wide tag views, per (orgId, month, tag, teamId, provider, modelName, operation,
  outcome) for those of an organization or team or narrowed by model or operation, and per
  (userId, month, tag, orgId, teamId) for questions about users.

Which rollup answers a view is decided in one place (backend/admin/sources.py): the smallest
whose key holds every field the view filters or groups by.

The organization and team are those stamped on the record (the user's membership when the
call was made), so a user who moves keeps their past usage where it was made.

A rollup write that fails after its ledger write is logged; `check` finds the drift and
`rebuild` removes it (scripts/rebuild_rollups.py). ROLLUPS is the one registry of them: the
writer below, the admin readers and indexes.py all read it.
"""
import logging
import math
from collections import Counter, defaultdict, namedtuple
from datetime import date, datetime, time, timedelta, timezone

from bson import ObjectId
from pymongo import UpdateOne

from backend.db import (
    BATCHES,
    USAGE,
    USAGE_DAILY,
    USAGE_DAILY_TOTALS,
    USAGE_ORG_MONTHLY,
    USAGE_ORG_TAG_MONTHLY,
    USAGE_TAG_MONTHLY,
    USAGE_USER_MONTHLY,
    USAGE_USER_OPERATION_MONTHLY,
    USAGE_USER_TAG_MONTHLY,
    atomic,
    once_per_batch,
)
from backend.timezones import SLOT, slot_name, slot_of
from backend.usage import repository
from backend.usage.model import F, with_defaults

log = logging.getLogger("backend.usage")

SUMS = (F.PROMPT_TOKENS, F.COMPLETION_TOKENS, F.CACHED_INPUT_TOKENS, F.CACHE_WRITE_TOKENS, F.REASONING_TOKENS,
        F.TOTAL_TOKENS, F.COST)
REQUESTS = "requests"
COUNTED = (*SUMS, REQUESTS)
SLOTS = "slots"
# The quarter hour (0-95) of a record's UTC day, as the ledger aggregation computes it.
SLOT_OF_TIMESTAMP = {"$add": [{"$multiply": [{"$hour": f"${F.TIMESTAMP}"}, 4]},
                              {"$floor": {"$divide": [{"$minute": f"${F.TIMESTAMP}"}, 15]}}]}
MEMBERSHIP = (F.ORG_ID, F.TEAM_ID)
# The API key a call came with: in the rollups about users, so a key's budget counters open at
# what the ledger holds for it.
DAILY_KEY = (F.DATE, F.USER_ID, F.PROVIDER, F.MODEL_NAME, F.OPERATION, F.OUTCOME, *MEMBERSHIP, F.API_KEY_ID)
COST_TOLERANCE = 1e-9

# per_day: the sums sit under days.<date> (one document a month) rather than at the top.
# scans: the other indexes the views that read the rollup need (the key is always a unique index).
# fan_out: (list field of the record, key field): one row per element instead of one per record.
Rollup = namedtuple("Rollup", "name collection key per_day scans fan_out", defaults=(None,))
TAG = "tag"
TAG_FAN_OUT = (F.TAGS, TAG)
# The tag of the row of a tag rollup that counts every call once, tagged or not (no tag is null:
# a tag is 1-64 characters).
EVERY_CALL = None
MODEL_KEY = (F.PROVIDER, F.MODEL_NAME, F.OPERATION, F.OUTCOME)
ROLLUPS = (
    Rollup("daily_totals", USAGE_DAILY_TOTALS, (F.DATE, *MODEL_KEY), False, ()),
    Rollup("tag_monthly", USAGE_TAG_MONTHLY, (TAG, F.MONTH, F.OUTCOME), True, (), TAG_FAN_OUT),
    Rollup("org_monthly", USAGE_ORG_MONTHLY, (F.ORG_ID, F.MONTH, F.TEAM_ID, *MODEL_KEY), True,
           ((F.TEAM_ID, F.MONTH),)),
    Rollup("org_tag_monthly", USAGE_ORG_TAG_MONTHLY, (F.ORG_ID, F.MONTH, TAG, F.TEAM_ID, *MODEL_KEY), True,
           ((TAG, F.MONTH),), TAG_FAN_OUT),
    Rollup("user_monthly", USAGE_USER_MONTHLY, (F.USER_ID, F.MONTH, *MEMBERSHIP, F.API_KEY_ID), True,
           ((F.MONTH, F.USER_ID), (F.ORG_ID, F.MONTH), (F.TEAM_ID, F.MONTH), (F.API_KEY_ID, F.MONTH))),
    Rollup("user_operation_monthly", USAGE_USER_OPERATION_MONTHLY,
           (F.USER_ID, F.MONTH, F.PROVIDER, F.OPERATION, *MEMBERSHIP), True,
           ((F.MONTH, F.OPERATION, F.PROVIDER), (F.ORG_ID, F.MONTH))),
    Rollup("user_tag_monthly", USAGE_USER_TAG_MONTHLY, (F.USER_ID, F.MONTH, TAG, *MEMBERSHIP), True,
           ((TAG, F.MONTH), (F.ORG_ID, F.MONTH)), TAG_FAN_OUT),
    Rollup("daily", USAGE_DAILY, DAILY_KEY, False, ((F.USER_ID, F.DATE),)),
)
# The order above is the order of preference of the admin views: smallest first.
ROLLUP_BY_NAME = {rollup.name: rollup for rollup in ROLLUPS}


def _key_of(rollup, fields):
    """The rollup's key values from a record or a DAILY_KEY row, both with_defaults (month derived from date)."""
    return tuple(fields[F.DATE][:7] if name == F.MONTH else fields.get(name) for name in rollup.key)


def _document_fields(rollup, key, email):
    """A rollup document's fields besides its sums: its key, the month and year of a daily
    one, and the user's email where it is about a user."""
    fields = dict(zip(rollup.key, key))
    if not rollup.per_day:
        fields[F.MONTH], fields[F.YEAR] = fields[F.DATE][:7], int(fields[F.DATE][:4])
    if F.USER_ID in fields:
        fields[F.USER_EMAIL] = email
    return fields


def _rows(rollup, record):
    """The record as the rollup counts it: once, or once per element of its fan-out list plus once
    under EVERY_CALL (the total a tag's share is of, read with the tags in one find)."""
    if rollup.fan_out is None:
        return [record]
    source, name = rollup.fan_out
    return [{**record, name: value} for value in (*(record.get(source) or ()), EVERY_CALL)]


def _grouped(records):
    """The active records summed per everything a rollup key reads (DAILY_KEY and the tags) and per
    quarter hour (the record's SLOTS field in the result):
    [(a record of the group, [its sums in SUMS order], its requests)], and each user's latest email."""
    groups, emails = {}, {}
    for record in map(with_defaults, records):
        if not record[F.IS_ACTIVE]:
            continue
        emails[record[F.USER_ID]] = record[F.USER_EMAIL]
        slot = slot_of(record[F.TIMESTAMP])[1]
        key = (*(record.get(name) for name in DAILY_KEY), tuple(record[F.TAGS]), slot)
        group = groups.get(key)
        if group is None:
            group = groups[key] = [{**record, SLOTS: slot}, [0] * len(SUMS), 0]
        sums = group[1]
        for index, field in enumerate(SUMS):
            sums[index] += record[field]
        group[2] += 1
    return groups.values(), emails


def _increments(records):
    """{rollup: {key: {path: summed increment}}} and the latest email of each user."""
    increments = {rollup: defaultdict(lambda: defaultdict(float)) for rollup in ROLLUPS}
    groups, emails = _grouped(records)
    for record, group_sums, requests in groups:
        slot = slot_name(record[SLOTS])
        for rollup in ROLLUPS:
            prefixes = ((f"days.{record[F.DATE]}.", f"{SLOTS}.{record[F.DATE]}.{slot}.") if rollup.per_day
                        else ("", f"{SLOTS}.{slot}."))
            for row in _rows(rollup, record):
                sums = increments[rollup][_key_of(rollup, row)]
                for prefix in prefixes:
                    for field, value in zip(SUMS, group_sums):
                        sums[prefix + field] += value
                    sums[prefix + REQUESTS] += requests
    return increments, emails


def _number(field, value):
    return value if field.endswith("cost") else int(value)


def apply(db, records, batch=None):
    """Add newly written records to every rollup: their increments merged per key, in one ordered
    bulk write per rollup collection (create the missing documents, then add to each the batch's
    increments unless it already took them). Applying the same batch (`batch`, the writer's batch
    id) again after a crash changes only what the first attempt had not reached. Raises on a
    write failure.

    Two first writers of a key race to create it; MongoDB retries such an upsert itself,
    and the embedded store gets the same effect from atomic()."""
    batch = batch or str(ObjectId())
    not_taken, taken = once_per_batch(batch)
    increments, emails = _increments(records)
    with atomic(db):
        for rollup, by_key in increments.items():
            creates, adds = [], []
            for key, sums in by_key.items():
                selector = dict(zip(rollup.key, key))
                fields = _document_fields(rollup, key, emails.get(selector.get(F.USER_ID)))
                update = {"$inc": {path: _number(path, value) for path, value in sums.items()}, **taken}
                if F.USER_EMAIL in fields:
                    update["$set"] = {F.USER_EMAIL: fields.pop(F.USER_EMAIL)}
                extra = {name: value for name, value in fields.items() if name not in selector}
                creates.append(UpdateOne(selector, {"$setOnInsert": {**extra, BATCHES: []}}, upsert=True))
                adds.append(UpdateOne({**selector, **not_taken}, update))
            if creates:
                db[rollup.collection].bulk_write(creates + adds, ordered=True)


def ledger_usage(db, field, owner_id, window, period):
    """(totalTokens, cost) the ledger holds for a user, team or organization (field userId, teamId
    or orgId) in a UTC day (YYYY-MM-DD) or month (YYYY-MM): the user-month documents of its
    members (a user who changed team or organization has one per membership)."""
    tokens, cost = 0, 0.0
    # Under the embedded store's lock: mongomock cannot read a document another thread is adding a day to.
    with atomic(db):
        documents = list(db[USAGE_USER_MONTHLY].find({field: owner_id, F.MONTH: period[:7]}, {"days": 1}))
    for document in documents:
        days = document.get("days", {})
        for day in ([days.get(period, {})] if window == "day" else days.values()):
            tokens += int(day.get(F.TOTAL_TOKENS, 0))
            cost += day.get(F.COST, 0.0)
    return tokens, cost


def ledger_usage_between(db, field, owner_id, start, end):
    """(totalTokens, cost) the ledger holds for a user, team or organization in [start, end) (UTC
    instants: a local day or month): the quarter-hour slots of its user-month documents; the ledger
    itself when a bound falls inside a slot."""
    if any(bound.minute % 15 or bound.second or bound.microsecond for bound in (start, end)):
        return _ledger_between(db, field, owner_id, start, end)
    first, last = start.date(), (end - timedelta(microseconds=1)).date()
    months = sorted({first.isoformat()[:7], last.isoformat()[:7]})
    with atomic(db):
        documents = list(db[USAGE_USER_MONTHLY].find({field: owner_id, F.MONTH: {"$gte": months[0],
                                                                                "$lte": months[-1]}}, {SLOTS: 1}))
    tokens, cost = 0, 0.0
    for document in documents:
        for day, slots in document.get(SLOTS, {}).items():
            if not first.isoformat() <= day <= last.isoformat():
                continue
            midnight = datetime.combine(date.fromisoformat(day), time(), tzinfo=timezone.utc)
            for slot, sums in slots.items():
                if start <= midnight + int(slot) * SLOT < end:
                    tokens += int(sums.get(F.TOTAL_TOKENS, 0))
                    cost += sums.get(F.COST, 0.0)
    return tokens, cost


def _ledger_between(db, field, owner_id, start, end):
    rows = list(db[USAGE].aggregate([
        {"$match": {field: owner_id, F.IS_ACTIVE: True, F.TIMESTAMP: {"$gte": start, "$lt": end}}},
        {"$group": {"_id": None, "tokens": {"$sum": f"${F.TOTAL_TOKENS}"}, "cost": {"$sum": f"${F.COST}"}}}]))
    return (int(rows[0]["tokens"]), rows[0]["cost"]) if rows else (0, 0.0)


def whole_months(start=None, end=None):
    """The ledger filter for whole months covering [start, end] (either may be None)."""
    query = {F.IS_ACTIVE: True}
    if start or end:
        query[F.MONTH] = {}
        if start:
            query[F.MONTH]["$gte"] = start.isoformat()[:7]
        if end:
            query[F.MONTH]["$lte"] = end.isoformat()[:7]
    return query


def _ledger_rows(db, start, end, fan_out):
    """The ledger summed per DAILY_KEY (and per element of the fan-out list, when there is one)."""
    group_id = {field: f"${field}" for field in DAILY_KEY}
    group_id[SLOTS] = SLOT_OF_TIMESTAMP
    stages = [{"$match": whole_months(start, end)}]
    if fan_out is not None:
        source, name = fan_out
        stages.append({"$unwind": f"${source}"})
        group_id[name] = f"${source}"
    sums = {field: {"$sum": f"${field}"} for field in SUMS}
    stages.append({"$group": {"_id": group_id, **sums, REQUESTS: {"$sum": 1},
                              F.USER_EMAIL: {"$max": f"${F.USER_EMAIL}"}}})
    return db[USAGE].aggregate(stages, allowDiskUse=True)


def expected(db, start=None, end=None):
    """{rollup: [documents]} as the ledger says they should be, for whole months covering the range."""
    documents = {rollup: {} for rollup in ROLLUPS}
    whole = list(_ledger_rows(db, start, end, None))
    _expected_rows(whole, [r for r in ROLLUPS if r.fan_out is None], documents)
    for fan_out in dict.fromkeys(rollup.fan_out for rollup in ROLLUPS if rollup.fan_out is not None):
        fanned = [r for r in ROLLUPS if r.fan_out == fan_out]
        _expected_rows(_ledger_rows(db, start, end, fan_out), fanned, documents)
        every_call = [{**row, "_id": {**row["_id"], fan_out[1]: EVERY_CALL}} for row in whole]
        _expected_rows(every_call, fanned, documents)
    return {rollup: list(by_key.values()) for rollup, by_key in documents.items()}


def _expected_rows(rows, rollups, documents):
    for row in rows:
        key_fields = with_defaults(row["_id"])
        for rollup in rollups:
            key = _key_of(rollup, key_fields)
            document = documents[rollup].get(key)
            if document is None:
                document = _document_fields(rollup, key, row[F.USER_EMAIL])
                documents[rollup][key] = document
            day, slot = key_fields[F.DATE], slot_name(int(row["_id"][SLOTS]))
            if rollup.per_day:
                targets = (document.setdefault("days", {}).setdefault(day, {}),
                           document.setdefault(SLOTS, {}).setdefault(day, {}).setdefault(slot, {}))
            else:
                targets = (document, document.setdefault(SLOTS, {}).setdefault(slot, {}))
            for target in targets:
                for field in COUNTED:
                    target[field] = target.get(field, 0) + row[field]


def _month_filter(start, end):
    return {key: value for key, value in whole_months(start, end).items() if key == F.MONTH}


def rebuild(db, start=None, end=None, names=None):
    """Replace every rollup (or those named) for whole months covering [start, end] (all time when
    open). Idempotent. Returns {rollup name: documents written}.

    A rebuilt document counts every record of the ledger, those a crashed write left unsettled
    too, so it is marked as having taken their batches: finishing those batches later settles
    their budget counters and leaves the rollups as rebuilt."""
    months = _month_filter(start, end)
    taken = _open_batches(db, start, end)
    written = {}
    for rollup, documents in expected(db, start, end).items():
        if names is not None and rollup.name not in names:
            continue
        for document in documents:
            document[BATCHES] = sorted(taken[rollup].get(tuple(document.get(name) for name in rollup.key), ()))
        db[rollup.collection].delete_many(months)
        if documents:
            db[rollup.collection].insert_many(documents)
        written[rollup.name] = len(documents)
    return written


def _open_batches(db, start, end):
    """{rollup: {key: batch ids}} of the records in those months whose batch a write left open."""
    taken = {rollup: defaultdict(set) for rollup in ROLLUPS}
    open_batches = repository.open_batch_ids(db)
    if not open_batches:
        return taken
    for record in map(with_defaults, db[USAGE].find({**whole_months(start, end), F.BATCH_ID: {"$in": open_batches}})):
        for rollup in ROLLUPS:
            for row in _rows(rollup, record):
                taken[rollup][_key_of(rollup, row)].add(record[F.BATCH_ID])
    return taken


def _differs(field, stored, wanted):
    if field.endswith("cost"):
        return not math.isclose(stored, wanted, rel_tol=0, abs_tol=COST_TOLERANCE)
    return stored != wanted


def _compare(kind, key, stored, wanted, fields):
    problems = []
    for field in fields:
        have, want = (stored or {}).get(field, 0), (wanted or {}).get(field, 0)
        if _differs(field, have, want):
            problems.append({"rollup": kind, "key": key, "field": field, "stored": have, "expected": want})
    return problems


def _compare_rollup(rollup, stored, wanted):
    """Differences between stored and wanted documents of one rollup, matched on its key (and day);
    a key stored in more than one document is a difference too (its sums would count twice)."""
    def entries(documents):
        found, copies = {}, Counter()
        for document in documents:
            key = "/".join(str(document.get(field)) for field in rollup.key)
            copies[key] += 1
            if rollup.per_day:
                found.update({f"{key}/{day}": sums for day, sums in document.get("days", {}).items()})
                found.update({f"{key}/{day}/{slot}": sums for day, slots in document.get(SLOTS, {}).items()
                              for slot, sums in slots.items()})
            else:
                found[key] = document
                found.update({f"{key}/{slot}": sums for slot, sums in document.get(SLOTS, {}).items()})
        return found, copies

    (have, copies), (want, _) = entries(stored), entries(wanted)
    problems = [{"rollup": rollup.name, "key": key, "field": "documents", "stored": count, "expected": 1}
                for key, count in sorted(copies.items()) if count > 1]
    for key in sorted(have.keys() | want.keys()):
        problems += _compare(rollup.name, key, have.get(key), want.get(key), COUNTED)
    return problems


def check(db, start=None, end=None):
    """Every difference between the stored rollups and the ledger, for whole months covering the range."""
    months = _month_filter(start, end)
    problems = []
    for rollup, wanted in expected(db, start, end).items():
        problems += _compare_rollup(rollup, db[rollup.collection].find(months), wanted)
    return problems
