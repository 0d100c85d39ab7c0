"""The one path every feature takes to an LLM: call, normalise, price, identify."""
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone

from backend.llm.base import Completion
from backend.pricing.services import Price, price_call


@dataclass(frozen=True)
class LLMCall:
    call_id: str
    provider: str
    completion: Completion
    price: Price
    at: datetime
    demo: bool

    @property
    def usage(self):
        return self.completion.usage


def call_llm(provider, messages, model, max_output_tokens):
    # MongoDB keeps milliseconds; truncating here makes the ledger and the response agree.
    now = datetime.now(timezone.utc)
    at = now.replace(microsecond=now.microsecond // 1000 * 1000)
    completion = provider.complete(messages, model, max_output_tokens)
    price = price_call(
        provider.price_provider,
        [completion.response_model, completion.model],
        completion.usage,
        at,
    )
    return LLMCall(call_id=uuid.uuid4().hex, provider=provider.name, completion=completion, price=price, at=at,
                   demo=provider.is_demo)
