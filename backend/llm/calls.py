"""The one path every feature takes to an LLM: call (or stream), normalise, price, log."""
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime

from backend.clock import utc_now
from backend.llm.base import Completion
from backend.pricing.services import Price, price_call

log = logging.getLogger("backend.llm")


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


def _finish(provider, completion, at, price_overrides):
    usage = completion.usage
    if usage.reported:
        log.info(
            "Token usage - Prompt: %d, Candidates: %d, Total: %d (provider=%s, model=%s)",
            usage.input_tokens, usage.output_tokens, usage.total_tokens, provider.name, completion.model,
        )
    else:
        log.warning("Token usage not available in the %s response for model %s", provider.name, completion.model)
    price = price_call(provider, [completion.response_model, completion.model], usage, at, price_overrides)
    return LLMCall(
        call_id=uuid.uuid4().hex, provider=provider.name, completion=completion,
        price=price, at=at, demo=provider.is_demo,
    )


def call_llm(provider, messages, model, max_output_tokens, price_overrides):
    at = utc_now()
    completion = provider.complete(messages, model, max_output_tokens)
    return _finish(provider, completion, at, price_overrides)


class LLMStream:
    """Iterate for text deltas; `call()` then prices what the provider reported, once."""

    def __init__(self, provider, messages, model, max_output_tokens, price_overrides):
        self.provider = provider
        self.at = utc_now()
        self.price_overrides = price_overrides
        self.stream = provider.stream(messages, model, max_output_tokens)
        self._call = None

    def __iter__(self):
        return iter(self.stream)

    @property
    def finished(self):
        return self.stream.finished

    def call(self):
        """The LLMCall for the text so far and whatever usage was reported; made once."""
        if self._call is None:
            self._call = _finish(self.provider, self.stream.completion(), self.at, self.price_overrides)
        return self._call

    def close(self):
        self.stream.close()
