"""The usage ledger's record (openai_token_usage) as its readers see it: the one place that
spells its field names and says what a record stored before a field existed means by its absence.

The recorder builds records with every field; the ledger also holds records from before some
fields existed, and an aggregation reports a missing field as null. Readers therefore take a
record through `with_defaults` (a dict) or `UsageRecord.from_document` (attributes).
"""
import copy
from dataclasses import dataclass, fields

from backend.db import DEFAULT_ORG_ID


class F:
    """Ledger field names."""

    ID = "_id"
    USER_ID = "userId"
    USER_EMAIL = "userEmail"
    ORG_ID = "orgId"
    TEAM_ID = "teamId"
    API_KEY_ID = "apiKeyId"
    TAGS = "tags"
    METADATA = "metadata"
    PROVIDER = "provider"
    MODEL_NAME = "modelName"
    RESPONSE_MODEL = "responseModel"
    PROMPT_TOKENS = "promptTokens"
    COMPLETION_TOKENS = "completionTokens"
    CACHED_INPUT_TOKENS = "cachedInputTokens"
    CACHE_WRITE_TOKENS = "cacheWriteTokens"
    REASONING_TOKENS = "reasoningTokens"
    USAGE_REPORTED = "usageReported"
    ESTIMATED = "estimated"
    TOTAL_TOKENS = "totalTokens"
    COST = "cost"
    PRICED = "priced"
    PRICE = "price"
    DEMO = "demo"
    OPERATION = "operation"
    OUTCOME = "outcome"
    HTTP_STATUS = "httpStatus"
    TIMESTAMP = "timestamp"
    DATE = "date"
    MONTH = "month"
    YEAR = "year"
    IS_ACTIVE = "isActive"
    CALL_ID = "callId"
    REQUEST_ID = "requestId"
    LATENCY_MS = "latencyMs"
    # The writer's batch that wrote the record (see backend/usage/writer.py).
    BATCH_ID = "batchId"


OK = "ok"

# Records from before outcomes existed were all successful requests with the provider's own
# counts; before organizations every user was in the default one, with no team, key, tags or
# metadata; before cache writes were counted there were none.
OLD_RECORD_DEFAULTS = {
    F.OUTCOME: OK,
    F.ESTIMATED: False,
    F.USAGE_REPORTED: True,
    F.HTTP_STATUS: None,
    F.ORG_ID: DEFAULT_ORG_ID,
    F.TEAM_ID: None,
    F.API_KEY_ID: None,
    F.TAGS: [],
    F.METADATA: {},
    F.CACHE_WRITE_TOKENS: 0,
}


def with_defaults(document):
    """A new dict: the document with each field of OLD_RECORD_DEFAULTS it lacks (or holds as
    null, as a $group reports a missing field) set to its default."""
    filled = dict(document)
    for name, default in OLD_RECORD_DEFAULTS.items():
        if filled.get(name) is None:
            filled[name] = copy.copy(default)
    return filled


@dataclass(frozen=True)
class UsageRecord:
    """One ledger record with attributes; a field neither stored nor defaulted is None."""

    id: object
    user_id: object
    user_email: str
    org_id: object
    team_id: object
    api_key_id: object
    tags: tuple
    metadata: dict
    provider: str
    model_name: str
    response_model: str
    prompt_tokens: int
    completion_tokens: int
    cached_input_tokens: int
    cache_write_tokens: int
    reasoning_tokens: int
    usage_reported: bool
    estimated: bool
    total_tokens: int
    cost: float
    priced: bool
    price: dict
    demo: bool
    operation: str
    outcome: str
    http_status: int
    timestamp: object
    date: str
    month: str
    year: int
    is_active: bool
    call_id: str
    request_id: str
    latency_ms: float

    @classmethod
    def from_document(cls, document):
        filled = with_defaults(document)
        values = {attribute: filled.get(name) for attribute, name in _DOCUMENT_NAMES.items()}
        values["tags"] = tuple(values["tags"])
        return cls(**values)


# UsageRecord's attributes are F's constants in snake case: user_id is F.USER_ID.
_DOCUMENT_NAMES = {field.name: getattr(F, field.name.upper()) for field in fields(UsageRecord)}
