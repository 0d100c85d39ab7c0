"""The ledger record model: what a record stored before a field existed reads as."""
from bson import ObjectId

from backend.db import DEFAULT_ORG_ID
from backend.usage.model import OLD_RECORD_DEFAULTS, F, UsageRecord, with_defaults
from tests.helpers import usage_record, utc

USER = {"_id": ObjectId(), "email": "old@example.com"}


def _old_record():
    """A record as the ledger kept it before outcomes, organizations, keys, tags, metadata,
    cache writes and httpStatus existed."""
    record = usage_record(USER, utc(2024, 3, 1, 12))
    for field in OLD_RECORD_DEFAULTS:
        record.pop(field, None)
    return record


def test_with_defaults_fills_each_missing_field():
    old = _old_record()
    filled = with_defaults(old)
    assert {field: filled[field] for field in OLD_RECORD_DEFAULTS} == {
        "outcome": "ok", "estimated": False, "usageReported": True, "httpStatus": None, "orgId": DEFAULT_ORG_ID,
        "teamId": None, "apiKeyId": None, "tags": [], "metadata": {}, "cacheWriteTokens": 0,
    }
    assert {field: filled[field] for field in old} == old and set(filled) - set(old) == set(OLD_RECORD_DEFAULTS)
    assert F.OUTCOME not in old  # a new dict; the document is left as it was


def test_with_defaults_keeps_stored_values_and_reads_null_as_missing():
    team, key = ObjectId(), ObjectId()
    stored = {**_old_record(), "outcome": "timeout", "orgId": None, "teamId": team, "apiKeyId": key,
              "tags": ["ci"], "metadata": {"run": "7"}, "estimated": True, "usageReported": False,
              "cacheWriteTokens": 12, "httpStatus": 504}
    filled = with_defaults(stored)
    assert (filled["outcome"], filled["orgId"], filled["teamId"], filled["apiKeyId"], filled["tags"],
            filled["metadata"], filled["estimated"], filled["usageReported"], filled["cacheWriteTokens"],
            filled["httpStatus"]) == ("timeout", DEFAULT_ORG_ID, team, key, ["ci"], {"run": "7"}, True, False, 12, 504)


def test_defaults_are_not_shared_between_records():
    first, second = with_defaults({}), with_defaults({})
    first["tags"].append("x")
    first["metadata"]["k"] = "v"
    assert (second["tags"], second["metadata"]) == ([], {})
    assert (OLD_RECORD_DEFAULTS["tags"], OLD_RECORD_DEFAULTS["metadata"]) == ([], {})


def test_usage_record_reads_an_old_record_with_its_defaults():
    old = _old_record()
    record = UsageRecord.from_document(old)
    assert (record.id, record.user_id, record.user_email, record.call_id) == (
        old["_id"], USER["_id"], "old@example.com", old["callId"])
    assert (record.prompt_tokens, record.completion_tokens, record.total_tokens, record.cost) == (100, 50, 150, 0.0001)
    assert (record.outcome, record.org_id, record.team_id, record.api_key_id, record.tags, record.metadata,
            record.estimated, record.usage_reported, record.cache_write_tokens, record.http_status) == (
        "ok", DEFAULT_ORG_ID, None, None, (), {}, False, True, 0, None)
    assert (record.date, record.month, record.year, record.is_active) == ("2024-03-01", "2024-03", 2024, True)
