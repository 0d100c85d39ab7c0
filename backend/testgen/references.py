"""Saved test cases most similar to a prompt (seed 001's RAG options), by embedding similarity.

The prompt (and its context) is embedded with the server's embedding model, in one billed call
recorded with the generation's requestId; the caller's own saved cases are ranked by the cosine
of their vectors of the same model (backend/testcases/embeddings.py); `ragSimilarityThreshold`
is that cosine and `maxRAGReferences` the cap. When the query cannot be embedded (the provider
is down, its reply unreadable, its model unpriced under a USD budget) or searched (the database),
the generation goes on without references and says so in `ragStatus`.
"""
import logging

from pymongo.errors import PyMongoError

from backend.budgets.services import BudgetExceeded
from backend.errors import APIError, ServiceUnavailable
from backend.testgen.embedding import embed, vector_key
from backend.testgen.services import RAG_SEARCHED, RAG_UNAVAILABLE

log = logging.getLogger(__name__)
# Similarity reads this much of each saved case.
MAX_CASE_CHARS = 5_000


def case_text(case):
    """What a saved case is embedded as: title, description, steps and expected result."""
    text = "\n".join(
        [case.get("title", ""), case.get("description", ""), *case.get("steps", []), case.get("expectedResult", "")]
    )
    return text[:MAX_CASE_CHARS]


def query_text(request):
    return "\n".join(part for part in (request["prompt"], request.get("context")) if part)


def find(ctx, embedder, search, request, who):
    """([(case, similarity)], ragStatus) for a generation request that asks for RAG, its prompt
    embedded by `embedder` (testgen.embedding.Embedder); `search(key, vector, limit, threshold)`
    ranks the caller's cases. A spent or unreadable budget refuses the request (429/503) as it
    would the generation."""
    try:
        vectors, call = embed(ctx, embedder, [query_text(request)], who)
    except (BudgetExceeded, ServiceUnavailable):
        raise
    except APIError as exc:
        log.warning("RAG skipped: the query could not be embedded (%s)", exc.message)
        return [], RAG_UNAVAILABLE
    key = vector_key(call.provider, call.model, len(vectors[0]))
    try:
        chosen = search(key, vectors[0], request["max_rag_references"], request["rag_similarity_threshold"])
    except PyMongoError as exc:
        log.warning("RAG skipped: saved cases could not be searched (%s)", exc)
        return [], RAG_UNAVAILABLE
    return chosen, RAG_SEARCHED
