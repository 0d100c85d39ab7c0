"""Test-case generation: plan the prompt, call or stream the model, read the cases, estimate."""
import math
from dataclasses import dataclass

from backend.llm.base import Provider
from backend.llm.calls import LLMStream, call_llm
from backend.llm.tokenizer import count_chat_tokens, encoding_for_model
from backend.pricing.services import COST_DECIMALS, model_rates
from backend.testcases.repository import reference_pool
from backend.testgen import references
from backend.testgen.parsing import parse_test_cases
from backend.testgen.prompts import build_messages

CHARS_PER_TOKEN = 4


@dataclass(frozen=True)
class Settings:
    """What generation needs from the app config."""

    max_output_tokens: int
    price_overrides: dict


@dataclass(frozen=True)
class Plan:
    provider: Provider
    model: str
    count: int
    messages: list
    references: list


def plan_generation(db, provider, owner_id, request):
    """The exact messages a generation request sends, with similar saved cases when asked."""
    chosen = []
    if request.get("use_rag"):
        chosen = references.rank(
            request["prompt"], reference_pool(db, owner_id),
            request["max_rag_references"], request["rag_similarity_threshold"],
        )
    messages = build_messages(
        request["prompt"], request["count"], request.get("file_content"), request.get("context"),
        [case for case, _ in chosen],
    )
    return Plan(provider, request.get("model") or provider.default_model, request["count"], messages, chosen)


def call(plan, settings):
    return call_llm(plan.provider, plan.messages, plan.model, settings.max_output_tokens, settings.price_overrides)


def open_stream(plan, settings):
    return LLMStream(plan.provider, plan.messages, plan.model, settings.max_output_tokens, settings.price_overrides)


def read_cases(plan, call):
    return parse_test_cases(call.completion.text, plan.count)


def reference_summary(plan):
    return [{"id": str(case["_id"]), "title": case.get("title", ""), "similarity": score}
            for case, score in plan.references]


def usage_summary(calls):
    """The `usage` block of /api/test-generation, summed over the request's calls."""
    first = calls[0]
    return {
        "provider": first.provider,
        "modelName": first.completion.model,
        "promptTokens": sum(c.usage.input_tokens for c in calls),
        "completionTokens": sum(c.usage.output_tokens for c in calls),
        "cachedInputTokens": sum(c.usage.cached_input_tokens for c in calls),
        "reasoningTokens": sum(c.usage.reasoning_tokens for c in calls),
        "totalTokens": sum(c.usage.total_tokens for c in calls),
        "cost": round(sum(c.price.cost for c in calls), COST_DECIMALS),
        "priced": all(c.price.priced for c in calls),
        "usageReported": all(c.usage.reported and c.usage.complete for c in calls),
        "callIds": [c.call_id for c in calls],
    }


def token_usage(calls):
    """Seed 000's tokenUsage object: {inputTokens, outputTokens, totalTokens, estimatedCost} and detail."""
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


def _estimation_method(provider, model):
    if provider.estimation == "tiktoken":
        return f"tiktoken {encoding_for_model(model).name} (exact for OpenAI chat models)"
    return f"approximation: ~{CHARS_PER_TOKEN} characters per token"


def _input_tokens(plan):
    if plan.provider.estimation == "tiktoken":
        return count_chat_tokens(plan.messages, plan.model)
    return math.ceil(sum(len(m["content"]) for m in plan.messages) / CHARS_PER_TOKEN)


def worst_case(plan, settings, at):
    """(tokens, USD) a planned call can use at most: its input plus the most output it asks for."""
    tokens = _input_tokens(plan)
    rates = model_rates(plan.provider, plan.model, at, settings.price_overrides)
    cost = 0.0
    if rates is not None:
        cost = (tokens * (rates.input_per_1m or 0) + settings.max_output_tokens * (rates.output_per_1m or 0)) / 1e6
    return tokens + settings.max_output_tokens, round(cost, COST_DECIMALS)


def estimate(plan, settings, at):
    """Input tokens of the planned messages, and what they would cost at the model's input rate."""
    tokens = _input_tokens(plan)
    rates = model_rates(plan.provider, plan.model, at, settings.price_overrides)
    cost = None
    if rates is not None and rates.input_per_1m is not None:
        cost = round(tokens * rates.input_per_1m / 1_000_000, COST_DECIMALS)
    note = "Input only: output tokens are not known before the call. Actual usage may vary."
    if cost is None:
        note += " The model is not in the price table, so no cost is estimated."
    return {
        "estimatedInputTokens": tokens,
        "estimatedCostUsd": cost,
        "modelName": plan.model,
        "provider": plan.provider.name,
        "method": _estimation_method(plan.provider, plan.model),
        "note": note,
        "references": reference_summary(plan),
    }


def token_info(provider, model, settings, at):
    """Price and limits of a model, from the price table (or PRICING_FILE) and this server's settings."""
    rates = model_rates(provider, model, at, settings.price_overrides)
    pricing = {
        "inputPer1M": rates.input_per_1m if rates else None,
        "cachedInputPer1M": rates.cached_input_per_1m if rates else None,
        "outputPer1M": rates.output_per_1m if rates else None,
        "currency": "USD",
        "source": rates.source if rates else "not in the price table",
    }
    return {
        "model": model,
        "provider": provider.name,
        "pricing": pricing,
        "limits": {
            "maxInputTokens": rates.context_window if rates else None,
            "maxOutputTokens": settings.max_output_tokens,
        },
        "estimationMethod": _estimation_method(provider, model),
        "note": "maxInputTokens is the model's context window from the price table; "
                "maxOutputTokens is the most this server asks the model for (LLM_MAX_OUTPUT_TOKENS).",
    }
