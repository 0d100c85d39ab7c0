"""What the generation endpoints share: the transaction's context built from the request, and
its answer as a JSON envelope or as server-sent events.

A stream sends `delta` events ({text}) as the model writes, then one `done` event with the
envelope of the JSON answer, or an `error` event ({success: false, message, status}).
"""
import json
import threading

from flask import Response, current_app, stream_with_context

from backend.auth.guards import caller
from backend.clock import now
from backend.db import get_db
from backend.llm.registry import get_provider, resolve_model
from backend.runtime import runtime
from backend.schemas import ok
from backend.testgen import references, services, transaction
from backend.testgen.embedding import Embedder
from backend.usage.tracking import (
    TrackedCall,
    close_with_response,
    request_id,
    taken_from_response,
    tracked_operation,
)


def plan(body, ctx=None):
    """The request's plan: its provider and model as this server allows them, and, when RAG is asked
    for, the caller's saved cases most similar to it (an estimate, `ctx` None, makes no embedding
    call: its references are not searched)."""
    provider = get_provider(body.get("provider"))
    model = resolve_model(provider, body.get("model"))
    who = caller._get_current_object()

    def find_references(request):
        if ctx is None:
            return [], services.RAG_NOT_SEARCHED
        state, db = runtime(), ctx.db
        search = lambda key, vector, limit, threshold: state.reference_search(  # noqa: E731
            db, who.id, key, vector, limit, threshold)
        return references.find(ctx, Embedder.of(current_app), search, request, transaction.attribution(body, who))

    return transaction.plan(body, provider, model, who, find_references)


def _context():
    state = runtime()
    operation, request = tracked_operation(), request_id()

    def open_call(reservation, who, intent, operation=operation):
        tracked = TrackedCall(state.writer, state.metrics, who=who, operation=operation, request_id=request,
                              reservation=reservation, intent=intent)
        close_with_response(tracked)
        return tracked

    return transaction.Context(
        db=get_db(), caller=caller._get_current_object(), settings=transaction.Settings.from_config(current_app.config),
        now=now(), open_call=open_call, hand_over=taken_from_response, start=_start(state), metrics=state.metrics,
        reserving=state.writer.reserving, cancel=state.writer.cancel)


def _start(state):
    def start(function, name):
        # Not a daemon: a worker that is shutting down waits for its drains (each bounded) to record.
        thread = threading.Thread(target=function, name=name)
        state.drains[:] = [running for running in state.drains if running.is_alive()]
        state.drains.append(thread)
        thread.start()

    return start


def wait_for_drains(app, timeout=10):
    """Join the background drains of abandoned streams (tests and shutdown)."""
    for thread in list(runtime(app).drains):
        thread.join(timeout)


def generate(body, finish, schema):
    """Run the generation transaction for the request: its JSON envelope, or its SSE stream."""
    ctx = _context()
    result = transaction.run(body, plan(body, ctx), ctx, _dumped(finish, schema) if body["stream"] else finish)
    if isinstance(result, transaction.Answer):
        return ok(result.data, result.message)
    response = Response(stream_with_context(_sse(result.events)), mimetype="text/event-stream",
                        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    response.call_on_close(result.abandon)
    return response


def _dumped(finish, schema):
    """A stream's answer goes out as the event's data, so it is dumped with the endpoint's schema
    inside the transaction (a failure there is a failure after the call)."""
    def dump(generation_plan, test_cases, calls):
        data, message = finish(generation_plan, test_cases, calls)
        return schema().dump(data), message

    return dump


def _event(name, payload):
    return f"event: {name}\ndata: {json.dumps(payload, separators=(',', ':'))}\n\n"


def _sse(events):
    try:
        for name, payload in events:
            if name == "done":
                data, message = payload
                yield _event("done", {"success": True, "data": data, "message": message})
            elif name == "error":
                yield _event("error", {"success": False, "message": payload.message, "status": payload.status})
            else:
                yield _event(name, payload)
    finally:
        # A client that left closes this generator: the transaction's must learn it at once.
        events.close()
