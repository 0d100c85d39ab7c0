"""Turn LLM calls into ledger documents and write them."""
import logging
from dataclasses import dataclass, field

import bson
from bson import ObjectId

from backend.budgets.services import apply_settlements
from backend.clock import utc_now
from backend.llm.calls import LLMCall
from backend.orgs.repository import DEFAULT_ORG_ID
from backend.usage import repository, rollups

log = logging.getLogger("backend.usage")


# Travels with a record through the spool, never into the ledger.
BUDGET_TICKET = "_budget"
OUTCOMES = ("ok", "unreadable", "failed_after_call", "client_gone", "timeout", "provider_error")


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

    @classmethod
    def of(cls, user, tags=(), metadata=None):
        """From the caller as the request loaded them (a user, or a key's owner as the key acts)."""
        return cls(user["_id"], user["email"], user.get("orgId") or DEFAULT_ORG_ID, user.get("teamId"),
                   user.get("apiKeyId"), tuple(tags or ()), dict(metadata or {}))


@dataclass(frozen=True)
class LedgerRecord:
    """One billed LLM call as the ledger keeps it: the only place a ledger document is built.

    `outcome` says how the request that made the call ended (see OUTCOMES); `httpStatus`
    is the status it answered with. A call is recorded whatever its outcome."""

    call: LLMCall
    who: Attribution
    operation: str
    outcome: str
    http_status: int
    request_id: str
    budget_ticket: dict | None = None  # settled on the budget counters when the record is written

    def __post_init__(self):
        if self.outcome not in OUTCOMES:
            raise ValueError(f"unknown outcome {self.outcome!r}")

    def document(self):
        call, usage, at, who = self.call, self.call.usage, self.call.at, self.who
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
            "date": at.strftime("%Y-%m-%d"),
            "month": at.strftime("%Y-%m"),
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


def _storable(document):
    """Has every field the writer reads, and encodes as BSON (no int past int64, no lone surrogate)."""
    if any(field not in document for field in REQUIRED_FIELDS):
        return False
    try:
        bson.encode(document)
    except (bson.errors.BSONError, OverflowError, ValueError, TypeError):
        return False
    return True


def write_records(db, records, metrics=None):
    """Ledger first, then, for exactly the records the ledger accepted, their budget tickets and
    the rollups. Raises when the ledger write fails; a failed counter or rollup update is logged
    (repair: rebuild_rollups.py)."""
    # Records spooled before outcomes existed were successful requests, and before organizations
    # they were made by users of the default one, without keys or tags.
    documents = [{"outcome": "ok", "estimated": False, "orgId": DEFAULT_ORG_ID, "teamId": None, "apiKeyId": None,
                  "tags": [], "metadata": {}, **r} for r in records]
    tickets = {document["callId"]: document.pop(BUDGET_TICKET) for document in documents
               if BUDGET_TICKET in document}
    invalid = [document.get("callId") for document in documents if not _storable(document)]
    if invalid:
        # Refused before anything is inserted, so no record of the batch is left unsettled;
        # the spool then writes the others one by one and sets these aside.
        raise ValueError(f"unstorable ledger record(s): {invalid}")
    inserted = repository.insert_records(db, documents)
    if len(inserted) < len(documents):
        # A replay of records an earlier write put in the ledger: that write may have stopped before
        # their rollups and counters (the two are not one transaction).
        kept = {r["callId"] for r in inserted}
        skipped = [d["callId"] for d in documents if d["callId"] not in kept]
        log.warning("Skipped %d record(s) already in the ledger (callIds %s); if the write that stored them "
                    "stopped midway, scripts/rebuild_rollups.py --check shows what their rollups miss",
                    len(skipped), ", ".join(skipped))
    settled = [{**r, BUDGET_TICKET: tickets[r["callId"]]} for r in inserted if r["callId"] in tickets]
    try:
        apply_settlements(db, settled, utc_now())
    except Exception:
        log.exception("Budget counters not settled for callIds %s; the ledger is intact",
                      ", ".join(r["callId"] for r in settled))
    try:
        rollups.apply(db, inserted)
    except Exception:
        days = sorted({r["date"] for r in inserted})
        log.exception(
            "Usage rollup update failed for %s; the ledger is intact. Repair with "
            "scripts/rebuild_rollups.py --from %s --to %s", ", ".join(days), days[0], days[-1],
        )
    if metrics is not None:
        metrics.usage_writes.inc(len(inserted))
        metrics.count_records(inserted)
    for r in inserted:
        log_tracked(r)
    return inserted


def log_tracked(r):
    """The seed's log line for a record written to the ledger."""
    log.info(
        "OpenAI usage tracked: user=%s provider=%s model=%s operation=%s outcome=%s promptTokens=%d "
        "completionTokens=%d totalTokens=%d cost=%.10f estimated=%s callId=%s",
        r["userEmail"], r["provider"], r["modelName"], r["operation"], r.get("outcome", "ok"),
        r["promptTokens"], r["completionTokens"], r["totalTokens"], r["cost"], r.get("estimated", False),
        r["callId"],
    )


def record_usage(db, records, spool=None, metrics=None):
    """Write the records; when the database does not take them they go to the spool.
    Never raises, so the user's response stands. Returns True when the ledger has them."""
    try:
        write_records(db, records, metrics)
    except Exception:
        log.exception(
            "Failed to write %d usage record(s); callIds: %s",
            len(records),
            ", ".join(r["callId"] for r in records),
        )
        if metrics is not None:
            metrics.usage_write_failures.inc()
        _spool(spool, records, metrics)
        return False
    return True


def _spool(spool, records, metrics):
    if spool is None:
        log.error("No spool configured: %d usage record(s) lost", len(records))
        return
    try:
        spool.append(records)
    except OSError:
        log.exception("Spooling %d usage record(s) failed too; callIds: %s", len(records),
                      ", ".join(r["callId"] for r in records))
        return
    if metrics is not None:
        metrics.usage_spooled.inc(len(records))
    log.warning("Spooled %d usage record(s) to %s; they are replayed when the database answers",
                len(records), spool.path)


def replay_spool(db, spool, metrics=None):
    """Write spooled records to the ledger (each exactly once); returns (replayed, still spooled)."""
    replayed, left = spool.replay(lambda records: write_records(db, records, metrics))
    if metrics is not None and replayed:
        metrics.usage_replayed.inc(replayed)
    if replayed:
        log.info("Replayed %d spooled usage record(s)", replayed)
    return replayed, left
