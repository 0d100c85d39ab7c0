"""Turn LLM calls into ledger documents and write them."""
import logging

from backend.usage import repository, rollups

log = logging.getLogger("backend.usage")


def build_record(call, user, operation, request_id):
    usage = call.usage
    at = call.at
    return {
        "userId": user["_id"],
        "userEmail": user["email"],
        "provider": call.provider,
        "modelName": call.completion.model,
        "responseModel": call.completion.response_model,
        "promptTokens": usage.input_tokens,
        "completionTokens": usage.output_tokens,
        "cachedInputTokens": usage.cached_input_tokens,
        "cacheWriteTokens": usage.cache_write_tokens,
        "reasoningTokens": usage.reasoning_tokens,
        "usageReported": usage.complete,
        "totalTokens": usage.total_tokens,
        "cost": call.price.cost,
        "priced": call.price.priced,
        "price": call.price.as_record(),
        "demo": call.demo,
        "operation": operation,
        "timestamp": at,
        "date": at.strftime("%Y-%m-%d"),
        "month": at.strftime("%Y-%m"),
        "year": at.year,
        "isActive": True,
        "callId": call.call_id,
        "requestId": request_id,
        "latencyMs": round(call.completion.latency_ms, 1),
    }


def record_usage(db, records):
    """Write the records, then roll them up. Failures are logged and swallowed so the
    user's response stands; a failed rollup is repaired by scripts/rebuild_rollups.py."""
    try:
        inserted = repository.insert_records(db, [dict(r) for r in records])
    except Exception:
        log.exception(
            "Failed to write %d usage record(s); callIds: %s",
            len(records),
            ", ".join(r["callId"] for r in records),
        )
        return False
    try:
        rollups.apply(db, inserted)
    except Exception:
        days = sorted({r["date"] for r in inserted})
        log.exception(
            "Usage rollup update failed for %s; the ledger is intact. Repair with "
            "scripts/rebuild_rollups.py --from %s --to %s", ", ".join(days), days[0], days[-1],
        )
    for r in inserted:
        log.info(
            "OpenAI usage tracked: user=%s provider=%s model=%s operation=%s promptTokens=%d "
            "completionTokens=%d totalTokens=%d cost=%.10f callId=%s",
            r["userEmail"], r["provider"], r["modelName"], r["operation"], r["promptTokens"],
            r["completionTokens"], r["totalTokens"], r["cost"], r["callId"],
        )
    return True
