"""Test cases owned by users (seed 000). `owner` is the caller's id, or None for an admin.

Every case is saved waiting for its embedding (`embedding.status: pending`, with the hash of the
text it embeds); backend/testcases/embeddings.py makes it off the request path.
"""
import hashlib
import math

from backend.errors import NotFound
from backend.pricing.services import to_units, to_usd
from backend.testcases import repository
from backend.testgen.references import case_text
from backend.testgen.services import usage_summary


def text_hash(case):
    """The hash of the text a case is embedded as: a vector is current while it matches."""
    return hashlib.sha256(case_text(case).encode("utf-8", "surrogatepass")).hexdigest()


def _document(fields, owner_id, ai_generated, provider=None, model=None, token_usage=None):
    return {
        "title": fields["title"],
        "description": fields.get("description", ""),
        "preconditions": fields.get("preconditions", []),
        "steps": fields.get("steps", []),
        "expectedResult": fields.get("expectedResult", ""),
        "priority": fields.get("priority", "medium"),
        "type": fields.get("type", "functional"),
        "tokenUsage": token_usage,
        "provider": provider,
        "modelName": model,
        "aiGenerated": ai_generated,
        "createdBy": owner_id,
    }


def _saved(db, documents, now):
    for document in documents:
        document["embedding"] = repository.pending_state(text_hash(document), now)
    return repository.insert_cases(db, documents, now)


def create_case(db, owner_id, fields, now):
    return _saved(db, [_document(fields, owner_id, False, token_usage=fields.get("tokenUsage"))], now)[0]


def token_usage(calls):
    """Seed 000's tokenUsage object of a generation: {inputTokens, outputTokens, totalTokens,
    estimatedCost} and the detail."""
    summary = usage_summary(calls)
    return {
        "inputTokens": summary["promptTokens"],
        "outputTokens": summary["completionTokens"],
        "totalTokens": summary["totalTokens"],
        "estimatedCost": summary["cost"],
        "cachedInputTokens": summary["cachedInputTokens"],
        "reasoningTokens": summary["reasoningTokens"],
        "provider": summary["provider"],
        "modelName": summary["modelName"],
        "callIds": summary["callIds"],
    }


def split_evenly(total, parts):
    """`total` as `parts` whole shares that sum to it exactly: equal weights, and the largest
    remainders (all equal, so the first shares) take one more each."""
    base, extra = divmod(total, parts)
    return [base + (1 if index < extra else 0) for index in range(parts)]


SPLIT_COUNTS = ("inputTokens", "outputTokens", "cachedInputTokens", "reasoningTokens")


def apportion(generation, count):
    """The tokenUsage of each of `count` cases saved from one generation: shares of every count
    and of the cost that sum exactly to the generation's, with its totals and callIds."""
    columns = {name: split_evenly(generation.get(name, 0), count) for name in SPLIT_COUNTS}
    costs = split_evenly(to_units(generation["estimatedCost"]), count)
    totals = {name: generation[name] for name in ("inputTokens", "outputTokens", "totalTokens", "estimatedCost")}
    shares = []
    for index in range(count):
        share = {name: columns[name][index] for name in SPLIT_COUNTS}
        shares.append({
            **share,
            "totalTokens": share["inputTokens"] + share["outputTokens"],
            "estimatedCost": to_usd(costs[index]),
            "provider": generation["provider"],
            "modelName": generation["modelName"],
            "callIds": generation["callIds"],
            "share": {"index": index + 1, "of": count},
            "generation": totals,
        })
    return shares


def save_generated(db, owner_id, test_cases, generation, now):
    """Save the cases of one generation; each carries its share of the generation's usage."""
    documents = [
        _document(case, owner_id, True, generation["provider"], generation["modelName"], usage)
        for case, usage in zip(test_cases, apportion(generation, len(test_cases)))
    ]
    return _saved(db, documents, now)


def get_case(db, case_id, owner):
    case = repository.find_case(db, case_id, owner)
    if case is None:
        raise NotFound(f"Test case {case_id} not found")
    return case


def list_cases(db, owner, query):
    page, limit = query["page"], query["limit"]
    cases, total = repository.list_cases(db, owner, query, (page - 1) * limit, limit)
    return {"data": cases, "total": total, "page": page, "limit": limit, "totalPages": math.ceil(total / limit)}


def update_case(db, case_id, owner, changes, now):
    """The updated case; an edit of the text it is embedded as makes it wait for a new vector."""
    case = repository.update_case(db, case_id, owner, changes, now)
    if case is None:
        raise NotFound(f"Test case {case_id} not found")
    digest = text_hash(case)
    if (case.get("embedding") or {}).get("textHash") != digest:
        case["embedding"] = repository.pending_state(digest, now)
        repository.set_pending(db, case["_id"], digest, now)
    return case


def delete_case(db, case_id, owner):
    """Delete a case (and its vector); returns its owner's id."""
    case = repository.delete_case(db, case_id, owner)
    if case is None:
        raise NotFound(f"Test case {case_id} not found")
    return case["createdBy"]
