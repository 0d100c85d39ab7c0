"""The admin audit log: one document per request to an /admin endpoint."""
import math

from pymongo import DESCENDING

from backend.db import AUDIT_LOG


def insert_entry(db, entry):
    db[AUDIT_LOG].insert_one(entry)


def entries_page(db, admin_id, start, end, page, limit, org_id=None):
    """Entries newest first; with org_id, those of that organization's callers only."""
    query = {} if org_id is None else {"orgId": org_id}
    if admin_id is not None:
        query["adminId"] = admin_id
    if start or end:
        query["date"] = {key: value.isoformat() for key, value in (("$gte", start), ("$lte", end)) if value}
    total = db[AUDIT_LOG].count_documents(query)
    cursor = db[AUDIT_LOG].find(query).sort([("time", DESCENDING), ("_id", DESCENDING)]).skip((page - 1) * limit)
    return {"data": list(cursor.limit(limit)), "total": total, "page": page, "limit": limit,
            "totalPages": math.ceil(total / limit)}
