"""What other packages may ask of the ledger, without knowing its collections."""
from backend.usage import rollups

# Which ledger field attributes a call to each kind of owner.
OWNER_FIELDS = {"user": "userId", "team": "teamId", "org": "orgId", "key": "apiKeyId"}


def period_totals(db, scope, owner_id, window, period):
    """(totalTokens, cost) the ledger holds for a user, team or organization (`scope`) in a UTC
    day (`window` "day", period YYYY-MM-DD) or month ("month", YYYY-MM)."""
    return rollups.ledger_usage(db, OWNER_FIELDS[scope], owner_id, window, period)
