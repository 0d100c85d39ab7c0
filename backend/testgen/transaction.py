"""The generation transaction shared by every generation endpoint, plain and streamed:
plan -> reserve -> call -> settle -> record.

- plan: the exact messages (with similar saved cases when asked) and the model;
- reserve: the worst case (input counted conservatively, plus the output cap) on the
  caller's budget counters, or a 429/422 before anything is spent;
- call: the provider's answer, or its stream read up to the first token, so a provider
  that fails before answering gives the usual JSON error (and releases the reservation:
  nothing was billed);
- settle and record: exactly one ledger record per call the provider may have run, with the
  request's outcome; the record carries the reservation's ticket, and the ledger writer
  settles the counters in the batch that writes it, whatever happened after the call.

A stream sends `delta` events ({text}) as the model writes, then one `done` event with the
envelope of the JSON answer, or an `error` event ({success: false, message, status}). When
the client goes away, a background thread keeps reading the provider's stream to its end
(at most LLM_TIMEOUT_SECONDS) and records the usage the provider reports.
"""
import json
import logging
import threading
import time
from dataclasses import dataclass

from flask import Response, current_app, g, stream_with_context
from pymongo.errors import PyMongoError

from backend.auth.guards import caller
from backend.budgets import services as budgets
from backend.clock import now
from backend.db import get_db
from backend.errors import APIError, ProviderError, ProviderTimeout
from backend.llm.base import UnreadableReply
from backend.llm.calls import finish_call, new_call_id
from backend.llm.registry import get_provider, resolve_model
from backend.metrics import metrics
from backend.orgs.services import require_allowed_model
from backend.pricing.services import price_sheet
from backend.schemas import ok
from backend.testgen import services
from backend.usage.capture import hold, record, tracked_operation
from backend.usage.recorder import Attribution

log = logging.getLogger(__name__)
STREAM_STATUS = 200
# Waits between tries of a call that cannot have been billed (no connection, 429, 5xx).
RETRY_BACKOFF_SECONDS = (0.5, 1, 2, 4)


@dataclass(frozen=True)
class Settings:
    """What generation needs from the app config."""

    max_output_tokens: int
    price_overrides: dict
    timeout_seconds: int
    max_retries: int
    policy: budgets.Policy


def settings():
    config = current_app.config
    return Settings(
        max_output_tokens=config["LLM_MAX_OUTPUT_TOKENS"],
        price_overrides=config["PRICE_OVERRIDES"],
        timeout_seconds=config["LLM_TIMEOUT_SECONDS"],
        max_retries=config["LLM_MAX_RETRIES"],
        policy=budgets.Policy(tuple(config["ALERT_THRESHOLDS"]), config["GLOBAL_DAILY_SPEND_LIMIT_USD"]),
    )


def plan(body):
    """The request's plan; similar saved cases come from the pool the test-case feature registers."""
    provider = get_provider(body.get("provider"))
    owner = caller["_id"]
    request = {**body, "model": resolve_model(provider, body.get("model"))}
    require_allowed_model(caller, request["model"])
    return services.plan_generation(provider, request,
                                    lambda: current_app.extensions["reference_pool"](get_db(), owner))


def _reserve(db, generation_plan, config, at):
    """Reserve the plan's worst case on the caller's counters (429 or 422 when it may not run)."""
    provider, model = generation_plan.provider, generation_plan.model
    user = caller._get_current_object()
    input_tokens = provider.count_input_tokens(generation_plan.messages, model)
    sheet = price_sheet(provider, [model], at, config.price_overrides)
    cost = sheet.worst_cost(input_tokens, config.max_output_tokens)
    try:
        return budgets.reserve(db, user, input_tokens + config.max_output_tokens, cost, at, config.policy,
                               priced=sheet.priced, model=model)
    except budgets.BudgetExceeded as exc:
        metrics().budget_rejections.labels(exc.data["window"]).inc()
        raise
    except PyMongoError:
        # A budget store that is down must not take generation down with it.
        log.exception("Budget reservation skipped: database unavailable")
        return budgets.Reservation(db, config.policy)


def _release(reservation):
    try:
        reservation.release()
    except PyMongoError:
        log.exception("Releasing a budget reservation failed")


def _failed(provider, exc):
    metrics().count_call(provider, f"error_{exc.status}" if isinstance(exc, APIError) else "error")


def _with_retries(attempt, retries):
    """attempt(), tried again (up to `retries` times) only after failures that cannot have been
    billed; a timeout or a broken reply is never retried, so one request is at most one billed call."""
    for number in range(retries + 1):
        try:
            return attempt()
        except APIError as exc:
            if not getattr(exc, "retryable", False) or number == retries:
                raise
            time.sleep(RETRY_BACKOFF_SECONDS[min(number, len(RETRY_BACKOFF_SECONDS) - 1)])


def _failure_outcome(exc):
    if isinstance(exc, ProviderTimeout):
        return "timeout"
    return "unreadable" if isinstance(exc, UnreadableReply) else "provider_error"


def _maybe_billed(exc):
    return isinstance(exc, APIError) and getattr(exc, "maybe_billed", False)


def run(body, finish, schema):
    """`finish(plan, test_cases, calls)` returns (data, message); the answer is its envelope or an SSE stream."""
    generation_plan = plan(body)
    config = settings()
    db = get_db()
    at = now()
    reservation = _reserve(db, generation_plan, config, at)
    who = Attribution.of(caller, body.get("tags"), body.get("metadata"))
    if body["stream"]:
        return _stream(generation_plan, finish, schema, reservation, config, at, who)
    provider = generation_plan.provider
    call_id = new_call_id()
    started = time.perf_counter()
    try:
        completion = _with_retries(lambda: provider.complete(generation_plan.messages, generation_plan.model,
                                                             config.max_output_tokens), config.max_retries)
    except Exception as exc:
        _unanswered(exc, generation_plan, config, reservation, at, started, who)
        raise
    call = _answered_call(generation_plan, config, call_id, at, text=completion.text, reported=completion.usage,
                          finished=True, response_model=completion.response_model, latency_ms=completion.latency_ms)
    held = hold(call, who, reservation.ticket())
    metrics().count_call(call.provider, "ok", call.latency_ms)
    try:
        test_cases = services.read_cases(generation_plan, call)
    except ProviderError:
        held.outcome = "unreadable"
        raise
    return ok(*finish(generation_plan, test_cases, [call]))


def _unanswered(exc, generation_plan, config, reservation, at, started, who):
    """The provider failed before it answered: a call it may have run (a timeout, a broken or
    unreadable reply) is recorded as an estimate; one it refused releases the reservation."""
    if _maybe_billed(exc):
        call = _call(generation_plan, config, new_call_id(), at, text="", reported=None, finished=False,
                     response_model=None, latency_ms=(time.perf_counter() - started) * 1000)
        hold(call, who, reservation.ticket(), _failure_outcome(exc))
    else:
        _release(reservation)
    _failed(generation_plan.provider.name, exc)


def _call(generation_plan, config, call_id, at, **answer):
    return finish_call(generation_plan.provider, call_id=call_id, messages=generation_plan.messages,
                       model=generation_plan.model, at=at, price_overrides=config.price_overrides, **answer)


def _answered_call(generation_plan, config, call_id, at, latency_ms, **answer):
    """The call for what the provider answered or, when that cannot be made of the answer, an
    estimate with no text (so the reply is unreadable): the provider ran the call either way."""
    try:
        return _call(generation_plan, config, call_id, at, latency_ms=latency_ms, **answer)
    except Exception:
        log.exception("Reading the answer of call %s failed; it is recorded as an estimate", call_id)
        return _call(generation_plan, config, call_id, at, latency_ms=latency_ms, text="", reported=None,
                     finished=False, response_model=None)


def _event(name, payload):
    return f"event: {name}\ndata: {json.dumps(payload, separators=(',', ':'))}\n\n"


def _error_event(exc):
    return _event("error", {"success": False, "message": exc.message, "status": exc.status})


class _StreamCall:
    """A streamed call from its first token to its one settlement and ledger record."""

    def __init__(self, generation_plan, stream, reservation, config, at, who):
        self.plan, self.stream, self.reservation = generation_plan, stream, reservation
        self.config, self.at, self.who = config, at, who
        self.call_id = new_call_id()
        self.app = current_app._get_current_object()
        self.request_id, self.operation = g.request_id, tracked_operation()
        self._call = None
        self._recorded = False
        self._lock = threading.Lock()

    def call(self):
        """The LLMCall for what the provider reported so far, made once."""
        with self._lock:
            if self._call is None:
                stream = self.stream
                self._call = _answered_call(self.plan, self.config, self.call_id, self.at, text=stream.text,
                                            reported=stream.usage, finished=stream.finished and stream.usage_final,
                                            response_model=stream.response_model, latency_ms=stream.latency_ms)
            return self._call

    def record(self, outcome, status=STREAM_STATUS):
        call = self.call()
        with self._lock:
            if self._recorded:
                return
            self._recorded = True
        self.stream.close()
        metrics().count_call(call.provider, outcome, call.latency_ms)
        record([(call, self.who, self.reservation.ticket(), outcome)], self.operation, status, self.request_id)

    def drain_then_record(self):
        """The client left: read the provider's stream to its end (bounded) in the background, so the
        usage it reports is recorded; the reservation stays until then."""
        def drain():
            with self.app.app_context():
                deadline = time.monotonic() + self.config.timeout_seconds
                try:
                    while time.monotonic() < deadline and self.stream.read() is not None:
                        pass
                except Exception:
                    log.warning("The provider's stream broke while draining call %s", self.call_id)
                finally:
                    self.record("client_gone")

        # Not a daemon: a worker that is shutting down waits for its drains (each bounded) to record.
        thread = threading.Thread(target=drain, name=f"drain-{self.call_id}")
        drains = self.app.extensions.setdefault("stream_drains", [])
        drains[:] = [running for running in drains if running.is_alive()]
        drains.append(thread)
        thread.start()


def wait_for_drains(app, timeout=10):
    """Join the background drains of abandoned streams (tests and shutdown)."""
    for thread in app.extensions.get("stream_drains", []):
        thread.join(timeout)


def _stream(generation_plan, finish, schema, reservation, config, at, who):
    provider = generation_plan.provider
    started = time.perf_counter()
    try:
        stream = _with_retries(lambda: provider.stream(generation_plan.messages, generation_plan.model,
                                                       config.max_output_tokens), config.max_retries)
    except Exception as exc:
        _unanswered(exc, generation_plan, config, reservation, at, started, who)
        raise
    streamed = _StreamCall(generation_plan, stream, reservation, config, at, who)
    try:
        first = stream.read()
    except Exception as exc:
        if stream.started or _maybe_billed(exc):
            # The provider had started before it failed: that call ran, so it is recorded (estimated).
            streamed.record(_failure_outcome(exc), getattr(exc, "status", 500))
        else:
            stream.close()
            _release(reservation)
            _failed(provider.name, exc)
        raise

    def events():
        outcome, handed_off = "ok", False
        try:
            delta = first
            while delta is not None:
                yield _event("delta", {"text": delta})
                delta = stream.read()
            call = streamed.call()
            try:
                test_cases = services.read_cases(generation_plan, call)
            except APIError as exc:
                outcome = "unreadable"
                yield _error_event(exc)
                return
            try:
                data, message = finish(generation_plan, test_cases, [call])
            except Exception as exc:
                outcome = "failed_after_call"
                if not isinstance(exc, APIError):
                    log.exception("Streamed generation failed after the call")
                    exc = APIError()
                yield _error_event(exc)
                return
            yield _event("done", {"success": True, "data": schema().dump(data), "message": message})
        except GeneratorExit:
            handed_off = True
            streamed.drain_then_record()
            raise
        except APIError as exc:
            outcome = _failure_outcome(exc)
            yield _error_event(exc)
        except Exception:
            outcome = "failed_after_call"
            log.exception("Streamed generation failed")
            yield _error_event(APIError())
        finally:
            if not handed_off:
                streamed.record(outcome)

    return Response(
        stream_with_context(events()),
        mimetype="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
