"""An embedding call as a billed call: reserved on the budgets of whoever it is for, made once for
many texts, and recorded once in the ledger (operation `embedding`) through the same tracked call
as a generation. RAG's query embedding (backend/testgen/references.py) and the embedding of saved
test cases (backend/testcases/embeddings.py) both come through here.
"""
import time
from dataclasses import dataclass

from backend.llm.base import checked_vectors, embedding_input
from backend.llm.calls import finish_embedding, new_call_id
from backend.llm.registry import get_embedder
from backend.llm.retries import with_retries
from backend.orgs.services import require_allowed_model
from backend.testgen.transaction import reserve_call, unanswered

EMBEDDING = "embedding"


@dataclass(frozen=True)
class Embedder:
    """The server's embeddings: provider, model, the length asked for, how many texts per call."""

    provider: object
    model: str
    dimensions: int | None
    batch_size: int

    @classmethod
    def of(cls, app):
        provider, model = get_embedder(app)
        return cls(provider, model, app.config["EMBEDDING_DIMENSIONS"], app.config["EMBEDDING_BATCH_SIZE"])


def vector_key(provider_name, model, dimensions):
    """What a vector can be compared with: vectors of one provider, model and length only."""
    return f"{provider_name}/{model}/{dimensions}"


def embed(ctx, embedder, texts, who):
    """(vectors, LLMCall) of one embedding call by `embedder` for `texts` (each cut to what a
    provider takes), billed to `who`. Raises Forbidden (the organization does not allow the model), BudgetExceeded
    (429), ServiceUnavailable (budgets unreadable) or the provider's error; a call the provider
    may have run is recorded all the same (estimated)."""
    provider, model = embedder.provider, embedder.model
    require_allowed_model(ctx.caller, model)
    texts = [embedding_input(text) for text in texts]
    call_id = new_call_id()
    reservation, intent = reserve_call(ctx, provider, model, provider.count_embedding_tokens(texts, model), 0, call_id)
    tracked = ctx.open_call(reservation, who, intent, operation=EMBEDDING)
    started = time.perf_counter()

    def call(reported=None, response_model=None, latency_ms=None):
        return finish_embedding(provider, call_id=call_id, texts=texts, model=model, response_model=response_model,
                                reported=reported, at=ctx.now, price_overrides=ctx.settings.price_overrides,
                                latency_ms=(time.perf_counter() - started) * 1000 if latency_ms is None else latency_ms)

    try:
        result = with_retries(lambda: provider.embed(texts, model, embedder.dimensions), ctx.settings.max_retries)
    except Exception as exc:
        unanswered(exc, tracked, call)
        raise
    try:
        answered = call(result.usage, result.response_model, result.latency_ms)
    except Exception:
        answered = call()  # the provider ran the call: it is recorded, estimated
    tracked.answered(lambda: answered)
    try:
        vectors = checked_vectors(result.vectors, len(texts))
    except Exception:
        tracked.outcome("unreadable")
        raise
    return vectors, answered
