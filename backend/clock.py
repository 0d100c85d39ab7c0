"""Time as the store keeps it."""
from datetime import datetime, timezone


def utc_now():
    """Now in UTC, truncated to the milliseconds MongoDB keeps, so stored and returned times agree."""
    now = datetime.now(timezone.utc)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)
