"""Ledger maintenance that keeps the rollups consistent."""
from datetime import date, timedelta

from backend.usage import repository, rollups


def deactivate(db, query):
    """Soft-delete (isActive false) the matching active records, then rebuild the months they
    touched so the rollups stop counting them. Returns how many records were deactivated."""
    dates = repository.active_dates(db, query)
    count = repository.deactivate(db, query)
    if dates:
        rollups.rebuild(db, date.fromisoformat(min(dates)), date.fromisoformat(max(dates)))
    return count


def apply_retention(db, older_than_days, mode, dry_run, today):
    """Deactivate or delete ledger records dated before `today - older_than_days`, keeping the
    rollups consistent; idempotent. Returns what matched and what changed."""
    cutoff = (today - timedelta(days=older_than_days)).isoformat()
    query = {"date": {"$lt": cutoff}}
    if mode == "deactivate":
        matched = repository.count(db, {**query, "isActive": True})
        changed = 0 if dry_run else deactivate(db, query)
    else:
        matched = repository.count(db, query)
        changed = 0
        if not dry_run and matched:
            dates = repository.dates(db, query)
            changed = repository.delete(db, query)
            rollups.rebuild(db, date.fromisoformat(min(dates)), date.fromisoformat(max(dates)))
    return {"cutoff": cutoff, "mode": mode, "dryRun": dry_run, "matched": matched, "changed": changed}
