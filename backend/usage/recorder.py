"""Turn LLM calls into ledger documents: the only place a ledger document is built."""
from dataclasses import dataclass, field

import bson
from bson import ObjectId

from backend.llm.calls import LLMCall


# Travels with a record through the spool, never into the ledger.
BUDGET_TICKET = "_budget"
INTERRUPTED = "interrupted"
OUTCOMES = ("ok", "unreadable", "failed_after_call", "client_gone", "timeout", "provider_error", INTERRUPTED)


@dataclass(frozen=True)
class Attribution:
    """Who a call is billed to and what it was for, fixed when its request starts: the user,
    their organization and team at that moment, the API key the request came with (or None),
    and the request's tags and metadata."""

    user_id: object
    user_email: str
    org_id: object
    team_id: object = None
    api_key_id: object = None
    tags: tuple = ()
    metadata: dict = field(default_factory=dict)


@dataclass(frozen=True)
class LedgerRecord:
    """One billed LLM call as the ledger keeps it: the only place a ledger document is built.

    `outcome` says how the request that made the call ended (see OUTCOMES); `httpStatus`
    is the status it answered with. A call is recorded whatever its outcome."""

    call: LLMCall
    who: Attribution
    operation: str
    outcome: str
    http_status: int | None  # None: no request answered (interrupted, or made off the request path)
    request_id: str
    budget_ticket: dict | None = None  # settled on the budget counters when the record is written

    def __post_init__(self):
        if self.outcome not in OUTCOMES:
            raise ValueError(f"unknown outcome {self.outcome!r}")

    def document(self):
        call, usage, at, who = self.call, self.call.usage, self.call.at, self.who
        day = at.date().isoformat()  # YYYY-MM-DD (strftime writes year 1 as "1")
        return {
            "_id": ObjectId(call.call_id),
            "userId": who.user_id,
            "userEmail": who.user_email,
            "orgId": who.org_id,
            "teamId": who.team_id,
            "apiKeyId": who.api_key_id,
            "tags": list(who.tags),
            "metadata": who.metadata,
            "provider": call.provider,
            "modelName": call.model,
            "responseModel": call.response_model,
            "promptTokens": usage.input_tokens,
            "completionTokens": usage.output_tokens,
            "cachedInputTokens": usage.cached_input_tokens,
            "cacheWriteTokens": usage.cache_write_tokens,
            "reasoningTokens": usage.reasoning_tokens,
            "usageReported": call.usage_reported,
            "estimated": call.estimated,
            "totalTokens": usage.total_tokens,
            "cost": call.price.cost,
            "priced": call.price.priced,
            "price": call.price.as_record(),
            "demo": call.demo,
            "operation": self.operation,
            "outcome": self.outcome,
            "httpStatus": self.http_status,
            "timestamp": at,
            "date": day,
            "month": day[:7],
            "year": at.year,
            "isActive": True,
            "callId": call.call_id,
            "requestId": self.request_id,
            "latencyMs": round(call.latency_ms, 1),
            **({BUDGET_TICKET: self.budget_ticket} if self.budget_ticket is not None else {}),
        }


# What the writer reads of every record (rollups, counters, metrics, the log line).
REQUIRED_FIELDS = ("callId", "userId", "userEmail", "provider", "modelName", "operation", "date", "timestamp",
                   "promptTokens", "completionTokens", "totalTokens", "cost")


def storable(document):
    """Has every field the writer reads, and encodes as BSON (no int past int64, no lone surrogate)."""
    if any(field not in document for field in REQUIRED_FIELDS):
        return False
    try:
        bson.encode(document)
    except (bson.errors.BSONError, OverflowError, ValueError, TypeError):
        return False
    return True
