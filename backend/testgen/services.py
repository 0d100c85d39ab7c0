"""Test-case generation: plain functions over a provider."""
from dataclasses import dataclass

from backend.llm.calls import call_llm
from backend.testgen.parsing import parse_test_cases
from backend.testgen.prompts import build_messages


@dataclass(frozen=True)
class Generation:
    test_cases: list
    calls: list


def generate_test_cases(provider, prompt, count, max_output_tokens, file_content=None, model=None):
    messages = build_messages(prompt, count, file_content)
    call = call_llm(provider, messages, model or provider.default_model, max_output_tokens)
    return Generation(test_cases=parse_test_cases(call.completion.text, count), calls=[call])


def usage_summary(calls):
    """The usage block of a response: summed over the request's calls."""
    first = calls[0]
    return {
        "provider": first.provider,
        "modelName": first.completion.model,
        "promptTokens": sum(c.usage.input_tokens for c in calls),
        "completionTokens": sum(c.usage.output_tokens for c in calls),
        "cachedInputTokens": sum(c.usage.cached_input_tokens for c in calls),
        "reasoningTokens": sum(c.usage.reasoning_tokens for c in calls),
        "totalTokens": sum(c.usage.total_tokens for c in calls),
        "cost": round(sum(c.price.cost for c in calls), 10),
        "priced": all(c.price.priced for c in calls),
        "usageReported": all(c.usage.reported for c in calls),
        "callIds": [c.call_id for c in calls],
    }
