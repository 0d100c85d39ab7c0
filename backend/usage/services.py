"""Ledger maintenance that keeps the rollups consistent."""
from datetime import date, timedelta

from backend.usage import repository, rollups


def _change_then_rebuild(db, dates, change):
    """Run `change()` on ledger records dated `dates`, then rebuild the months they touch so
    the rollups follow. Returns what `change()` returned."""
    changed = change()
    if dates:
        rollups.rebuild(db, date.fromisoformat(min(dates)), date.fromisoformat(max(dates)))
    return changed


def deactivate(db, query):
    """Soft-delete (isActive false) the matching active records; the rollups stop counting
    them. Returns how many records were deactivated."""
    return _change_then_rebuild(db, repository.active_dates(db, query), lambda: repository.deactivate(db, query))


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
            changed = _change_then_rebuild(db, repository.dates(db, query), lambda: repository.delete(db, query))
    return {"cutoff": cutoff, "mode": mode, "dryRun": dry_run, "matched": matched, "changed": changed}
