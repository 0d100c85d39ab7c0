"""Shared facts of the reconciliation tests: the day, the clock, the keys and ledger records."""
from datetime import date, datetime, timezone

from bson import ObjectId

from backend.db import USAGE, get_db
from tests.helpers import usage_record

DAY = date(2026, 11, 22)
# 2026-11-22T00:00:00Z and the next midnight as Unix times (computed outside the code under test).
DAY_START, DAY_END = 1795305600, 1795392000
# 09:00 UTC the next day: with the default 6 settle hours, DAY is the day due.
NOW = datetime(2026, 11, 23, 9, 0, tzinfo=timezone.utc)
OPENAI_ADMIN_KEY = "sk-admin-test-0123456789"
ANTHROPIC_ADMIN_KEY = "sk-ant-admin01-test-0123456789"
USER = {"_id": ObjectId(), "email": "dev@example.com"}


def ledger_record(provider, model, response_model, prompt, completion, cached=0, cache_write=0, day=DAY,
                  active=True, estimated=False):
    """A ledger record of `day` at noon UTC, as the recorder writes it."""
    record = usage_record(USER, datetime(day.year, day.month, day.day, 12, tzinfo=timezone.utc), prompt,
                          completion, model=model, provider=provider, cached=cached, active=active)
    record.update(responseModel=response_model, cacheWriteTokens=cache_write, estimated=estimated)
    return record


def insert(app, records):
    get_db(app)[USAGE].insert_many(records)


def by_provider(results):
    return {result["provider"]: result for result in results}
