"""What other packages may ask of the ledger, without knowing its collections."""
from backend.usage import rollups

# Which ledger field attributes a call to each kind of owner.
OWNER_FIELDS = {"user": "userId", "team": "teamId", "org": "orgId", "key": "apiKeyId"}


def period_totals(db, scope, owner_id, window, period, between=None):
    """(totalTokens, cost) the ledger holds for a user, team or organization (`scope`) in a UTC
    day (`window` "day", period YYYY-MM-DD) or month ("month", YYYY-MM), or, with `between`
    (start, end), in that span of UTC instants (a local day or month)."""
    if between is not None:
        return rollups.ledger_usage_between(db, OWNER_FIELDS[scope], owner_id, *between)
    return rollups.ledger_usage(db, OWNER_FIELDS[scope], owner_id, window, period)
