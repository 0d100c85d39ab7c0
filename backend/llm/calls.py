"""A finished LLM call: its usage (as reported, or estimated when it was not), priced, logged.

The provider's own counts are used whenever it reported them for a call it finished.
When it reported none, or the call did not finish (a stream that broke or was cut
short), the usage is estimated the same way the budget reservation counted it: input
with the provider's counter (or what the provider had already reported), output from
the text received, at most the output the call asked for (the provider stops there, so
an estimate never exceeds what was reserved). Such a call is flagged `estimated`; it is
never dropped.
"""
import logging
from dataclasses import dataclass
from datetime import datetime

from bson import ObjectId

from backend.llm.base import TokenUsage
from backend.pricing.services import Price, price_call

log = logging.getLogger("backend.llm")


@dataclass(frozen=True)
class LLMCall:
    call_id: str
    provider: str
    model: str
    response_model: str
    usage: TokenUsage
    price: Price
    at: datetime
    latency_ms: float
    demo: bool
    estimated: bool
    text: str

    @property
    def usage_reported(self):
        """The provider reported every count itself (nothing estimated, nothing left out)."""
        return not self.estimated and self.usage.complete


def new_call_id():
    """An ObjectId's hex: the ledger record's _id is made from it, so a record is stored once."""
    return str(ObjectId())


def reserved_call(provider, call_id, model, input_tokens, output_tokens, price, at):
    """The call as its reservation counted it (input counted, the output cap, `price` at the worst
    case): what the ledger records for a call whose process died before it closed (estimated)."""
    usage = TokenUsage(input_tokens=input_tokens, output_tokens=output_tokens, reported=False, complete=False)
    return LLMCall(call_id=call_id, provider=provider.name, model=model, response_model=model, usage=usage,
                   price=price, at=at, latency_ms=0.0, demo=provider.is_demo, estimated=True, text="")


def settled_usage(provider, messages, model, text, reported, finished, max_output_tokens=None):
    """(usage, estimated): the reported usage of a finished call, else an estimate (its output
    from the text, at most `max_output_tokens`)."""
    if reported is not None and reported.reported and finished:
        return reported, False
    has_input = reported is not None and reported.reported and reported.input_tokens > 0
    input_tokens = reported.input_tokens if has_input else provider.count_input_tokens(messages, model)
    output_tokens = provider.count_output_tokens(text, model)
    if max_output_tokens is not None:
        output_tokens = min(output_tokens, max_output_tokens)
    if reported is not None and reported.reported:
        output_tokens = max(output_tokens, reported.output_tokens)
    return TokenUsage(
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cached_input_tokens=reported.cached_input_tokens if has_input else 0,
        cache_write_tokens=reported.cache_write_tokens if has_input else 0,
        reasoning_tokens=min(reported.reasoning_tokens, output_tokens) if reported is not None else 0,
        reported=False,
        complete=False,
    ), True


def finish_call(provider, *, call_id, messages, model, response_model, text, reported, finished, at, latency_ms,
                price_overrides, max_output_tokens=None):
    """The LLMCall for what the provider answered; logs the usage it is recorded with. A reply
    text or model name that is not a string (an SDK passes a server's JSON through unchecked) is
    no text and no model name: the call is recorded all the same, and its reply is unreadable."""
    if not isinstance(response_model, str):
        response_model = None
    if not isinstance(text, str):
        log.warning("The %s call %s answered a %s where text belongs", provider.name, call_id, type(text).__name__)
        # Its size still bounds the output tokens of an estimate.
        text, estimate_from = "", repr(text)
    else:
        estimate_from = text
    usage, estimated = settled_usage(provider, messages, model, estimate_from, reported, finished, max_output_tokens)
    if estimated:
        log.warning("Usage of the %s call %s (model %s) was not reported in full; recorded as an estimate: "
                    "input %d, output %d", provider.name, call_id, model, usage.input_tokens, usage.output_tokens)
    else:
        log.info("Token usage - Prompt: %d, Candidates: %d, Total: %d (provider=%s, model=%s)",
                 usage.input_tokens, usage.output_tokens, usage.total_tokens, provider.name, model)
    price = price_call(provider, [response_model, model], usage, at, price_overrides)
    return LLMCall(call_id=call_id, provider=provider.name, model=model, response_model=response_model or model,
                   usage=usage, price=price, at=at, latency_ms=latency_ms, demo=provider.is_demo,
                   estimated=estimated, text=text)


def finish_embedding(provider, *, call_id, texts, model, response_model, reported, at, latency_ms, price_overrides):
    """The LLMCall of an embedding call: its input tokens as the provider reported them, else
    counted as its reservation counted them (flagged estimated); nothing is generated."""
    if reported is not None and reported.reported:
        usage, estimated = reported, False
    else:
        usage = TokenUsage(input_tokens=provider.count_embedding_tokens(texts, model), output_tokens=0,
                           reported=False, complete=False)
        estimated = True
        log.warning("Usage of the %s embedding call %s (model %s) was not reported; recorded as an estimate: "
                    "input %d", provider.name, call_id, model, usage.input_tokens)
    if not isinstance(response_model, str):
        response_model = None
    price = price_call(provider, [response_model, model], usage, at, price_overrides)
    return LLMCall(call_id=call_id, provider=provider.name, model=model, response_model=response_model or model,
                   usage=usage, price=price, at=at, latency_ms=latency_ms, demo=provider.is_demo,
                   estimated=estimated, text="")
