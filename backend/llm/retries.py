"""Trying a provider call again, only when the failure cannot have been billed."""
import time

from backend.errors import APIError

# Waits between tries of a call that cannot have been billed (no connection, 429, 5xx).
RETRY_BACKOFF_SECONDS = (0.5, 1, 2, 4)


def with_retries(attempt, retries):
    """attempt(), tried again (up to `retries` times) only after failures that cannot have been
    billed; a timeout or a broken reply is never retried, so one request is at most one billed call."""
    for number in range(retries + 1):
        try:
            return attempt()
        except APIError as exc:
            if not getattr(exc, "retryable", False) or number == retries:
                raise
            time.sleep(RETRY_BACKOFF_SECONDS[min(number, len(RETRY_BACKOFF_SECONDS) - 1)])


def maybe_billed(exc):
    """Whether the provider may have run (and billed) the call that failed with `exc`."""
    return isinstance(exc, APIError) and getattr(exc, "maybe_billed", False)
