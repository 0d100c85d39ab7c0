"""Ledger maintenance that keeps the rollups consistent."""
from datetime import date

from backend.usage import repository, rollups


def deactivate(db, query):
    """Soft-delete (isActive false) the matching active records, then rebuild the months they
    touched so the rollups stop counting them. Returns how many records were deactivated."""
    dates = repository.active_dates(db, query)
    count = repository.deactivate(db, query)
    if dates:
        rollups.rebuild(db, date.fromisoformat(min(dates)), date.fromisoformat(max(dates)))
    return count
