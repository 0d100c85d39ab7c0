"""Every index the service relies on, defined once as data."""
from dataclasses import dataclass

from pymongo import ASCENDING, DESCENDING

from backend.db import (
    ALERTS,
    API_KEYS,
    AUDIT_LOG,
    BUDGET_COUNTERS,
    ORGANIZATIONS,
    RECONCILIATIONS,
    TEAMS,
    TESTCASES,
    TESTCASE_VECTORS,
    USAGE,
    USERS,
)
from backend.usage.rollups import ROLLUPS


@dataclass(frozen=True)
class IndexSpec:
    collection: str
    keys: tuple
    unique: bool = False
    expire_after_seconds: int | None = None

    @property
    def name(self):
        return "_".join(f"{field}_{direction}" for field, direction in self.keys)


# The eight compound indexes of seed 004, then the uniqueness guarantees.
INDEXES = (
    IndexSpec(USAGE, (("userId", ASCENDING), ("timestamp", DESCENDING))),
    IndexSpec(USAGE, (("userEmail", ASCENDING), ("timestamp", DESCENDING))),
    IndexSpec(USAGE, (("modelName", ASCENDING), ("timestamp", DESCENDING))),
    IndexSpec(USAGE, (("date", ASCENDING), ("userId", ASCENDING))),
    IndexSpec(USAGE, (("month", ASCENDING), ("userId", ASCENDING))),
    IndexSpec(USAGE, (("year", ASCENDING), ("userId", ASCENDING))),
    IndexSpec(USAGE, (("operation", ASCENDING), ("timestamp", DESCENDING))),
    IndexSpec(USAGE, (("isActive", ASCENDING), ("timestamp", DESCENDING))),
    # New records also carry _id = ObjectId(callId), which every store keeps unique at no cost;
    # this index guards the records written before that.
    IndexSpec(USAGE, (("callId", ASCENDING),), unique=True),
    # The records of a batch a crash left open, for the background pass to finish.
    IndexSpec(USAGE, (("batchId", ASCENDING),)),
    IndexSpec(USERS, (("email", ASCENDING),), unique=True),
    # Organizations: names unique (case-insensitively), team names unique in their organization;
    # an organization's members by email, its records newest first (scoped usage logs).
    IndexSpec(ORGANIZATIONS, (("nameKey", ASCENDING),), unique=True),
    IndexSpec(TEAMS, (("orgId", ASCENDING), ("nameKey", ASCENDING)), unique=True),
    IndexSpec(USERS, (("orgId", ASCENDING), ("email", ASCENDING))),
    IndexSpec(USERS, (("teamId", ASCENDING),)),
    IndexSpec(USAGE, (("orgId", ASCENDING), ("timestamp", DESCENDING))),
    # A tag's records newest first (usage logs and export filtered by tag); a key's by hash.
    IndexSpec(USAGE, (("tags", ASCENDING), ("timestamp", DESCENDING))),
    IndexSpec(API_KEYS, (("hash", ASCENDING),), unique=True),
    IndexSpec(API_KEYS, (("orgId", ASCENDING), ("createdAt", ASCENDING))),
    IndexSpec(TESTCASES, (("createdBy", ASCENDING), ("createdAt", DESCENDING))),
    # Cases waiting for their embedding, by when they are due; a pool's vectors, changed since.
    IndexSpec(TESTCASES, (("embedding.status", ASCENDING), ("embedding.nextAttemptAt", ASCENDING))),
    IndexSpec(TESTCASE_VECTORS, (("owner", ASCENDING), ("key", ASCENDING), ("updatedAt", ASCENDING))),
    # Rollups (from their registry): the unique keys their $inc upserts target, and the range
    # scans the views make.
    *(IndexSpec(rollup.collection, tuple((field, ASCENDING) for field in rollup.key), unique=True)
      for rollup in ROLLUPS),
    *(IndexSpec(rollup.collection, tuple((field, ASCENDING) for field in scan))
      for rollup in ROLLUPS for scan in rollup.scans),
    # Budget counters expire two months after their window; alerts are claimed by due time.
    IndexSpec(BUDGET_COUNTERS, (("expiresAt", ASCENDING),), expire_after_seconds=0),
    IndexSpec(ALERTS, (("status", ASCENDING), ("nextAttemptAt", ASCENDING))),
    IndexSpec(AUDIT_LOG, (("time", DESCENDING),)),
    IndexSpec(AUDIT_LOG, (("adminId", ASCENDING), ("time", DESCENDING))),
    IndexSpec(AUDIT_LOG, (("orgId", ASCENDING), ("time", DESCENDING))),
    # One reconciliation per (provider, day) is its _id; the admin view lists a date range.
    IndexSpec(RECONCILIATIONS, (("date", DESCENDING), ("provider", ASCENDING))),
)


def ledger_ttl(days):
    """The optional TTL on raw ledger records (LEDGER_TTL_DAYS); see README for the trade-off."""
    return IndexSpec(USAGE, (("timestamp", ASCENDING),), expire_after_seconds=days * 86400)


def ensure_indexes(db, specs=INDEXES, ledger_ttl_days=0):
    """Create what is missing and bring TTLs to their setting; returns
    [(collection, index name, "created" | "exists" | "updated" | "dropped")].
    With ledger_ttl_days 0 a ledger TTL left from an earlier setting is dropped: records stop expiring."""
    ttl = ledger_ttl(ledger_ttl_days or 1)
    specs = (*specs, ttl) if ledger_ttl_days else specs
    report = []
    for spec in specs:
        collection = db[spec.collection]
        existing = collection.index_information().get(spec.name)
        options = {"name": spec.name, "unique": spec.unique}
        if spec.expire_after_seconds is not None:
            options["expireAfterSeconds"] = spec.expire_after_seconds
        if existing is None:
            collection.create_index(list(spec.keys), **options)
            report.append((spec.collection, spec.name, "created"))
        elif spec.expire_after_seconds is not None and existing.get("expireAfterSeconds") != spec.expire_after_seconds:
            db.command("collMod", spec.collection,
                       index={"name": spec.name, "expireAfterSeconds": spec.expire_after_seconds})
            report.append((spec.collection, spec.name, "updated"))
        else:
            report.append((spec.collection, spec.name, "exists"))
    if not ledger_ttl_days and "expireAfterSeconds" in db[USAGE].index_information().get(ttl.name, {}):
        db[USAGE].drop_index(ttl.name)
        report.append((USAGE, ttl.name, "dropped"))
    return report
