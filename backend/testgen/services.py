"""Test-case generation: plan the prompt, read the cases, summarise usage, estimate."""
import math
from dataclasses import dataclass

from backend.llm.base import Provider
from backend.llm.tokenizer import encoding_for_model
from backend.pricing.services import COST_DECIMALS, price_sheet
from backend.testgen.parsing import parse_test_cases
from backend.testgen.prompts import build_messages

CHARS_PER_TOKEN = 4
# ragStatus (backend/testgen/references.py): RAG not asked for; searched (references may still be
# none above the threshold); the search could not run; an estimate, which makes no embedding call.
RAG_OFF, RAG_SEARCHED, RAG_UNAVAILABLE, RAG_NOT_SEARCHED = "off", "searched", "unavailable", "not_searched"


@dataclass(frozen=True)
class Plan:
    provider: Provider
    model: str
    count: int
    messages: list
    references: list
    rag_status: str = RAG_OFF


def plan_generation(provider, request, find_references):
    """The exact messages a generation request sends, with the saved cases most similar to it when
    RAG is asked for: `find_references(request)` gives ([(case, similarity)], ragStatus)."""
    chosen, rag_status = find_references(request) if request.get("use_rag") else ([], RAG_OFF)
    messages = build_messages(
        request["prompt"], request["count"], request.get("file_content"), request.get("context"),
        [case for case, _ in chosen],
    )
    return Plan(provider, request.get("model") or provider.default_model, request["count"], messages, chosen,
                rag_status)


def read_cases(plan, call):
    return parse_test_cases(call.text, plan.count)


def reference_summary(plan):
    return [{"id": str(case["_id"]), "title": case.get("title", ""), "similarity": score}
            for case, score in plan.references]


def usage_summary(calls):
    """The `usage` block of /api/test-generation, summed over the request's calls."""
    first = calls[0]
    return {
        "provider": first.provider,
        "modelName": first.model,
        "promptTokens": sum(c.usage.input_tokens for c in calls),
        "completionTokens": sum(c.usage.output_tokens for c in calls),
        "cachedInputTokens": sum(c.usage.cached_input_tokens for c in calls),
        "reasoningTokens": sum(c.usage.reasoning_tokens for c in calls),
        "totalTokens": sum(c.usage.total_tokens for c in calls),
        "cost": round(sum(c.price.cost for c in calls), COST_DECIMALS),
        "priced": all(c.price.priced for c in calls),
        "usageReported": all(c.usage_reported for c in calls),
        "estimated": any(c.estimated for c in calls),
        "callIds": [c.call_id for c in calls],
    }


def _estimation_method(provider, model):
    if provider.estimation == "tiktoken":
        return f"tiktoken {encoding_for_model(model).name} (exact for OpenAI chat models)"
    return f"approximation: ~{CHARS_PER_TOKEN} characters per token"


def _approximate_tokens(plan):
    """Seed 001's estimate for providers whose tokenizer is not available offline."""
    if plan.provider.estimation == "tiktoken":
        return plan.provider.count_input_tokens(plan.messages, plan.model)
    return math.ceil(sum(len(m["content"]) for m in plan.messages) / CHARS_PER_TOKEN)


def estimate(plan, max_output_tokens, price_overrides, at):
    """Input tokens of the planned messages and their cost at the model's input rate, plus what a
    generation would reserve against a budget (its input counted so it never falls short)."""
    tokens = _approximate_tokens(plan)
    reserved_input = plan.provider.count_input_tokens(plan.messages, plan.model)
    sheet = price_sheet(plan.provider, [plan.model], at, price_overrides)
    rates = sheet.rates_at(tokens)
    cost = None
    if sheet.priced and rates.input_per_1m is not None:
        cost = round(tokens * rates.input_per_1m / 1_000_000, COST_DECIMALS)
    note = "Input only: output tokens are not known before the call. Actual usage may vary."
    if cost is None:
        note += " The model is not in the price table, so no cost is estimated."
    if plan.rag_status == RAG_NOT_SEARCHED:
        note += (" Saved cases (useRAG) are not searched for an estimate, which makes no embedding call: each "
                 "reference a generation finds adds up to 2,000 characters to its prompt.")
    return {
        "estimatedInputTokens": tokens,
        "estimatedCostUsd": cost,
        "reservedTokens": reserved_input + max_output_tokens,
        "reservedCostUsd": round(float(sheet.worst_cost(reserved_input, max_output_tokens)), COST_DECIMALS),
        "modelName": plan.model,
        "provider": plan.provider.name,
        "method": _estimation_method(plan.provider, plan.model),
        "note": note,
        "references": reference_summary(plan),
        "ragStatus": plan.rag_status,
    }


def token_info(provider, model, max_output_tokens, price_overrides, at):
    """Price (with its tiers) and limits of a model, from the price table (or PRICING_FILE) and
    this server's settings."""
    sheet = price_sheet(provider, [model], at, price_overrides)
    base = sheet.rates_at(0)
    pricing = {
        "inputPer1M": base.input_per_1m,
        "cachedInputPer1M": base.cached_input_per_1m,
        "cacheWritePer1M": base.cache_write_per_1m,
        "outputPer1M": base.output_per_1m,
        "tiers": sheet.tiers(),
        "currency": "USD",
        "source": sheet.source if sheet.priced or provider.price_provider is None else "not in the price table",
    }
    return {
        "model": model,
        "provider": provider.name,
        "pricing": pricing,
        "limits": {
            "maxInputTokens": sheet.context_window,
            "maxOutputTokens": max_output_tokens,
        },
        "estimationMethod": _estimation_method(provider, model),
        "note": "maxInputTokens is the model's context window from the price table; "
                "maxOutputTokens is the most this server asks the model for (LLM_MAX_OUTPUT_TOKENS). "
                "A tier's rates apply to every token of a call whose input exceeds aboveInputTokens.",
    }
