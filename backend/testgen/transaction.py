"""The generation transaction shared by every generation endpoint, plain and streamed:
plan -> reserve -> call -> settle -> record.

- plan: the exact messages (with similar saved cases when asked) and the model;
- reserve: the worst case (input counted conservatively, plus the output cap) on the
  caller's budget counters, or a 429/422 before anything is spent;
- call: the provider's answer, or its stream read up to the first token, so a provider
  that fails before answering gives the usual JSON error (and releases the reservation:
  nothing was billed);
- settle and record: one TrackedCall (backend.usage.tracking) per provider call, told what
  happened and closed once; its ledger record carries the reservation's ticket, and the ledger
  writer settles the counters in the batch that writes it, whatever happened after the call.

Plain functions: everything a request brings (store, caller, settings, time, how to open a
tracked call, how to start a thread) comes in a `Context` the routes build (backend.testgen.web).
A stream is returned as events, ("delta", {text}) as the model writes, then ("done", (data,
message)) or ("error", APIError); the routes format them as server-sent events. When the client
goes away, a background thread keeps reading the provider's stream to its end (at most
LLM_TIMEOUT_SECONDS) and records the usage the provider reports.
"""
import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Callable, Iterator

from pymongo.errors import PyMongoError

from backend.budgets import services as budgets
from backend.errors import APIError, ProviderError, ProviderTimeout, ServiceUnavailable, as_api_error
from backend.llm.base import UnreadableReply
from backend.llm.calls import finish_call, new_call_id, reserved_call
from backend.llm.retries import maybe_billed, with_retries
from backend.orgs.services import require_allowed_model
from backend.pricing.services import price_sheet, reserved_price
from backend.testgen import services
from backend.usage.recorder import Attribution

log = logging.getLogger(__name__)
STREAM_STATUS = 200


@dataclass(frozen=True)
class Settings:
    """What generation needs from the app config."""

    max_output_tokens: int
    price_overrides: dict
    timeout_seconds: int
    max_retries: int
    policy: budgets.Policy
    budgets_fail_open: bool = False

    @classmethod
    def from_config(cls, config):
        return cls(
            max_output_tokens=config["LLM_MAX_OUTPUT_TOKENS"],
            price_overrides=config["PRICE_OVERRIDES"],
            timeout_seconds=config["LLM_TIMEOUT_SECONDS"],
            max_retries=config["LLM_MAX_RETRIES"],
            policy=budgets.Policy(tuple(config["ALERT_THRESHOLDS"]), config["GLOBAL_DAILY_SPEND_LIMIT_USD"]),
            budgets_fail_open=config["BUDGETS_FAIL_OPEN"],
        )


@dataclass(frozen=True)
class Context:
    """What one generation request brings to the transaction."""

    db: object
    caller: object  # backend.auth.caller.Caller
    settings: Settings
    now: datetime
    # (reservation, attribution, intent: the call as reserved, operation=None: the request's) ->
    # a TrackedCall the response (or, off the request path, the code that opened it) closes
    open_call: Callable
    # a stream takes its TrackedCall from the response (it closes it itself)
    hand_over: Callable = None
    # start(function, name): run a drain of an abandoned stream in a thread the app waits for
    start: Callable = None
    metrics: object = None
    # (call id, {counter key: [tokens, units]}): spool a budget reservation before it is made
    reserving: Callable = lambda call_id, reserved: None
    # (call id): the reservation (or call) was refused; nothing of it is left to recover
    cancel: Callable = lambda call_id: None


@dataclass(frozen=True)
class Answer:
    data: object
    message: str


@dataclass(frozen=True)
class Stream:
    events: Iterator
    # called when the response is closed: an abandoned stream that never started is drained too
    abandon: Callable


def plan(body, provider, model, caller, find_references):
    """The request's plan; `find_references(request)` gives the saved cases most similar to it and
    the ragStatus, when RAG is asked for (backend/testgen/references.py)."""
    require_allowed_model(caller, model)
    return services.plan_generation(provider, {**body, "model": model}, find_references)


def _reserve(ctx, generation_plan, call_id):
    """Reserve the plan's worst case on the caller's counters (429 or 422 when it may not run);
    returns (reservation, the call as the reservation counts it)."""
    provider, model = generation_plan.provider, generation_plan.model
    input_tokens = provider.count_input_tokens(generation_plan.messages, model)
    return reserve_call(ctx, provider, model, input_tokens, ctx.settings.max_output_tokens, call_id)


def reserve_call(ctx, provider, model, input_tokens, output_tokens, call_id):
    """Reserve a call's worst case (`input_tokens` counted so they never fall short, `output_tokens`
    the most it may generate) on the caller's counters; returns (reservation, the call as the
    reservation counts it: what the ledger records if the process dies before the call closes)."""
    sheet = price_sheet(provider, [model], ctx.now, ctx.settings.price_overrides)
    cost = sheet.worst_cost(input_tokens, output_tokens)
    intent = reserved_call(provider, call_id, model, input_tokens, output_tokens,
                           reserved_price(provider, sheet, input_tokens, cost), ctx.now)
    return _reservation(ctx, input_tokens + output_tokens, cost, sheet, model, call_id), intent


def _reservation(ctx, tokens, cost, sheet, model, call_id):
    config = ctx.settings
    planned = budgets.planned(ctx.caller, tokens, cost, ctx.now)
    if planned:  # noted first: a process that dies before the call gives it back on recovery
        ctx.reserving(call_id, planned)
    try:
        return budgets.reserve(ctx.db, ctx.caller, tokens, cost, ctx.now, config.policy, priced=sheet.priced,
                               model=model, reservation_id=call_id)
    except budgets.BudgetExceeded as exc:
        _refused(ctx, planned, call_id)
        if ctx.metrics is not None:
            ctx.metrics.budget_rejections.labels(exc.data["window"]).inc()
        raise
    except PyMongoError:
        _refused(ctx, planned, call_id)
        if not config.budgets_fail_open:
            # A budget that cannot be checked cannot be kept: refused before anything is billed.
            log.warning("Generation refused: its budget counters cannot be read (database unavailable)")
            raise ServiceUnavailable("Your budget cannot be checked right now (database unavailable); nothing was "
                                     "billed. Try again shortly.") from None
        log.exception("Budget reservation skipped (BUDGETS_FAIL_OPEN): database unavailable")
        return budgets.Reservation(ctx.db, config.policy)
    except Exception:
        _refused(ctx, planned, call_id)
        raise


def _refused(ctx, planned, call_id):
    """The reservation raised (and gave back what it had taken): nothing of it is left to recover."""
    if planned:
        ctx.cancel(call_id)


def attribution(body, caller):
    """Who pays for the request's calls: the caller as they are now, and the request's tags and metadata."""
    return Attribution(caller.id, caller.email, caller.org_id, caller.team_id, caller.api_key_id,
                       tuple(body.get("tags") or ()), dict(body.get("metadata") or {}))


def _failure_outcome(exc):
    if isinstance(exc, ProviderTimeout):
        return "timeout"
    return "unreadable" if isinstance(exc, UnreadableReply) else "provider_error"


def _status(exc):
    return exc.status if isinstance(exc, APIError) else 500


def run(body, generation_plan, ctx, finish):
    """`finish(plan, test_cases, calls)` returns (data, message); the result is an Answer, or a Stream
    with `body["stream"]`."""
    reservation, intent = _reserve(ctx, generation_plan, new_call_id())
    tracked = ctx.open_call(reservation, attribution(body, ctx.caller), intent)
    if body["stream"]:
        return _stream(generation_plan, finish, tracked, ctx)
    provider, config, call_id = generation_plan.provider, ctx.settings, tracked.call_id
    started = time.perf_counter()
    try:
        completion = with_retries(lambda: provider.complete(generation_plan.messages, generation_plan.model,
                                                            config.max_output_tokens), config.max_retries)
    except Exception as exc:
        unanswered(exc, tracked, _estimate(generation_plan, ctx, tracked.call_id, started))
        raise
    call = _answered_call(generation_plan, ctx, call_id, text=completion.text, reported=completion.usage,
                          finished=True, response_model=completion.response_model, latency_ms=completion.latency_ms)
    tracked.answered(lambda: call)
    try:
        test_cases = services.read_cases(generation_plan, call)
    except ProviderError:
        tracked.outcome("unreadable")
        raise
    return Answer(*finish(generation_plan, test_cases, [call]))


def unanswered(exc, tracked, estimate):
    """The provider failed before it answered: a call it may have run (a timeout, a broken or
    unreadable reply) is recorded as `estimate()`; one it refused releases the reservation."""
    if maybe_billed(exc):
        tracked.failed(_status(exc), _failure_outcome(exc), estimate())
    else:
        tracked.refused(_status(exc))


def _estimate(generation_plan, ctx, call_id, started):
    return lambda: _call(generation_plan, ctx, call_id, text="", reported=None, finished=False, response_model=None,
                         latency_ms=(time.perf_counter() - started) * 1000)


def _call(generation_plan, ctx, call_id, **answer):
    return finish_call(generation_plan.provider, call_id=call_id, messages=generation_plan.messages,
                       model=generation_plan.model, at=ctx.now, price_overrides=ctx.settings.price_overrides,
                       max_output_tokens=ctx.settings.max_output_tokens, **answer)


def _answered_call(generation_plan, ctx, call_id, latency_ms, **answer):
    """The call for what the provider answered or, when that cannot be made of the answer, an
    estimate with no text (so the reply is unreadable): the provider ran the call either way."""
    try:
        return _call(generation_plan, ctx, call_id, latency_ms=latency_ms, **answer)
    except Exception:
        log.exception("Reading the answer of call %s failed; it is recorded as an estimate", call_id)
        return _call(generation_plan, ctx, call_id, latency_ms=latency_ms, text="", reported=None,
                     finished=False, response_model=None)


class _StreamCall:
    """A streamed call: what the provider reported, read into one LLMCall, and its drain when the
    client leaves before the end."""

    def __init__(self, generation_plan, stream, tracked, ctx):
        self.plan, self.stream, self.tracked, self.ctx = generation_plan, stream, tracked, ctx
        self.call_id = tracked.call_id
        self._call = None
        self._draining = False
        self._lock = threading.Lock()
        tracked.answered(self.call)

    def call(self):
        """The LLMCall for what the provider reported so far, made once."""
        with self._lock:
            if self._call is None:
                stream = self.stream
                self._call = _answered_call(self.plan, self.ctx, self.call_id, text=stream.text,
                                            reported=stream.usage, finished=stream.finished and stream.usage_final,
                                            response_model=stream.response_model, latency_ms=stream.latency_ms)
            return self._call

    def close(self, outcome, status=STREAM_STATUS):
        self.tracked.outcome(outcome)
        self.call()
        self.stream.close()
        self.tracked.close(status)

    def abandon(self):
        """The client left: read the provider's stream to its end (bounded) in the background, so the
        usage it reports is recorded; the reservation stays until then. Once, and never after close."""
        with self._lock:
            if self._draining or self.tracked.closed:
                return
            self._draining = True

        def drain():
            deadline = time.monotonic() + self.ctx.settings.timeout_seconds
            try:
                while time.monotonic() < deadline and self.stream.read() is not None:
                    pass
            except Exception:
                log.warning("The provider's stream broke while draining call %s", self.call_id)
            finally:
                self.close("client_gone")

        self.ctx.start(drain, f"drain-{self.call_id}")


def _stream(generation_plan, finish, tracked, ctx):
    provider, config = generation_plan.provider, ctx.settings
    started = time.perf_counter()
    try:
        stream = with_retries(lambda: provider.stream(generation_plan.messages, generation_plan.model,
                                                      config.max_output_tokens), config.max_retries)
    except Exception as exc:
        unanswered(exc, tracked, _estimate(generation_plan, ctx, tracked.call_id, started))
        raise
    streamed = _StreamCall(generation_plan, stream, tracked, ctx)
    try:
        first = stream.read()
    except Exception as exc:
        if stream.started or maybe_billed(exc):
            # The provider had started before it failed: that call ran, so it is recorded (estimated).
            streamed.close(_failure_outcome(exc), _status(exc))
        else:
            stream.close()
            tracked.refused(_status(exc))
        raise
    ctx.hand_over(tracked)
    return Stream(_events(generation_plan, finish, streamed, first), streamed.abandon)


def _events(generation_plan, finish, streamed, first):
    outcome, handed_off = "ok", False
    try:
        delta = first
        while delta is not None:
            yield "delta", {"text": delta}
            delta = streamed.stream.read()
        call = streamed.call()
        try:
            test_cases = services.read_cases(generation_plan, call)
        except APIError as exc:
            outcome = "unreadable"
            yield "error", exc
            return
        try:
            answer = finish(generation_plan, test_cases, [call])
        except Exception as exc:
            outcome = "failed_after_call"
            yield "error", as_api_error(exc)
            return
        yield "done", answer
    except GeneratorExit:
        handed_off = True
        streamed.abandon()
        raise
    except APIError as exc:
        outcome = _failure_outcome(exc)
        yield "error", exc
    except Exception as exc:
        outcome = "failed_after_call"
        yield "error", as_api_error(exc)
    finally:
        if not handed_off:
            streamed.close(outcome)
