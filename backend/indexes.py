"""Every index the service relies on, defined once as data."""
from dataclasses import dataclass

from pymongo import ASCENDING, DESCENDING

from backend.db import TESTCASES, USAGE, USAGE_DAILY, USAGE_USER_MONTHLY, USERS


@dataclass(frozen=True)
class IndexSpec:
    collection: str
    keys: tuple
    unique: bool = False

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
    IndexSpec(USAGE, (("callId", ASCENDING),), unique=True),
    IndexSpec(USERS, (("email", ASCENDING),), unique=True),
    IndexSpec(TESTCASES, (("createdBy", ASCENDING), ("createdAt", DESCENDING))),
    # Rollups: the unique keys their $inc upserts target, and the range scans the views make.
    IndexSpec(USAGE_DAILY, tuple((field, ASCENDING) for field in
                                 ("date", "userId", "provider", "modelName", "operation")), unique=True),
    IndexSpec(USAGE_DAILY, (("userId", ASCENDING), ("date", ASCENDING))),
    IndexSpec(USAGE_USER_MONTHLY, (("userId", ASCENDING), ("month", ASCENDING)), unique=True),
    IndexSpec(USAGE_USER_MONTHLY, (("month", ASCENDING), ("userId", ASCENDING))),
)


def ensure_indexes(db, specs=INDEXES):
    """Create what is missing; returns [(collection, index name, "created" | "exists")]."""
    report = []
    for spec in specs:
        collection = db[spec.collection]
        existing = collection.index_information()
        if spec.name in existing:
            report.append((spec.collection, spec.name, "exists"))
            continue
        collection.create_index(list(spec.keys), name=spec.name, unique=spec.unique)
        report.append((spec.collection, spec.name, "created"))
    return report
