"""The body shared by every generation view: plan, then answer with JSON or server-sent events.

A stream sends `delta` events ({text}) as the model writes, then one `done` event
with the envelope of the JSON answer, or an `error` event ({success: false, message,
status}). Its usage is recorded exactly once when the stream ends, however it ends:
completed, broken by the provider, or abandoned by the client. What the provider
reported by then is what is recorded.
"""
import json
import logging

from flask import Response, current_app, g, stream_with_context
from flask_jwt_extended import current_user

from backend.db import get_db
from backend.errors import APIError
from backend.llm.registry import get_provider
from backend.metrics import metrics
from backend.schemas import ok
from backend.testgen import services
from backend.testgen.spend import Spend
from backend.usage.capture import add_calls, record_calls

log = logging.getLogger(__name__)


def settings():
    return services.Settings(
        max_output_tokens=current_app.config["LLM_MAX_OUTPUT_TOKENS"],
        price_overrides=current_app.config["PRICE_OVERRIDES"],
    )


def plan(body):
    provider = get_provider(body.get("provider"))
    return services.plan_generation(get_db(), provider, current_user["_id"], body)


def _failed(provider, exc):
    metrics().count_call(provider, f"error_{exc.status}" if isinstance(exc, APIError) else "error")


def run(body, operation, finish, schema):
    """`finish(plan, test_cases, calls)` returns (data, message); the answer is its envelope or an SSE stream.

    The request's worst case is reserved against the caller's budget first (429 when it does not fit).
    """
    generation_plan = plan(body)
    spend = Spend(current_user, generation_plan, settings())
    if body["stream"]:
        return _stream(generation_plan, operation, finish, schema, spend)
    try:
        call = services.call(generation_plan, settings())
    except Exception as exc:
        spend.release()
        _failed(generation_plan.provider.name, exc)
        raise
    spend.settle([call])
    metrics().count_call(call.provider, "ok", call.completion.latency_ms)
    test_cases = services.read_cases(generation_plan, call)
    add_calls([call])
    return ok(*finish(generation_plan, test_cases, [call]))


def _event(name, payload):
    return f"event: {name}\ndata: {json.dumps(payload, separators=(',', ':'))}\n\n"


def _stream(generation_plan, operation, finish, schema, spend):
    user, request_id = current_user, g.request_id
    provider = generation_plan.provider.name
    try:
        llm_stream = services.open_stream(generation_plan, settings())
    except Exception as exc:
        spend.release()
        _failed(provider, exc)
        raise

    def events():
        outcome = "ok"
        try:
            for delta in llm_stream:
                yield _event("delta", {"text": delta})
            call = llm_stream.call()
            data, message = finish(generation_plan, services.read_cases(generation_plan, call), [call])
            yield _event("done", {"success": True, "data": schema().dump(data), "message": message})
        except APIError as exc:
            outcome = f"error_{exc.status}"
            yield _event("error", {"success": False, "message": exc.message, "status": exc.status})
        except Exception:
            outcome = "error"
            log.exception("Streamed generation failed")
            yield _event("error", {"success": False, "message": "Internal server error", "status": 500})
        finally:
            llm_stream.close()
            call = llm_stream.call()
            spend.settle([call])
            metrics().count_call(provider, outcome if llm_stream.finished or outcome != "ok" else "abandoned",
                                 call.completion.latency_ms)
            record_calls([call], user, operation, request_id)

    return Response(
        stream_with_context(events()),
        mimetype="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
