"""Saved test cases most similar to a prompt (seed 001's RAG options).

Similarity is TF-IDF cosine: terms are lower-case words of two or more letters or
digits; idf = ln((1 + N) / (1 + df)) + 1 over the prompt and the candidates
(N documents); vectors are raw term counts times idf, compared by cosine.
"""
import math
import re
from collections import Counter

_WORD = re.compile(r"[a-z0-9]{2,}")
# Similarity reads this much of each saved case, so ranking the pool stays fast however large cases are.
MAX_CASE_CHARS = 5_000


def case_text(case):
    text = " ".join(
        [case.get("title", ""), case.get("description", ""), *case.get("steps", []), case.get("expectedResult", "")]
    )
    return text[:MAX_CASE_CHARS]


def _vector(counts, idf):
    weights = {term: count * idf[term] for term, count in counts.items()}
    norm = math.sqrt(sum(w * w for w in weights.values()))
    return {term: w / norm for term, w in weights.items()} if norm else {}


def rank(query, candidates, limit, threshold):
    """[(candidate, similarity)] with similarity >= threshold, best first, at most `limit`."""
    documents = [Counter(_WORD.findall(query.lower()))]
    documents += [Counter(_WORD.findall(case_text(c).lower())) for c in candidates]
    total = len(documents)
    document_frequency = Counter(term for doc in documents for term in doc)
    idf = {term: math.log((1 + total) / (1 + df)) + 1 for term, df in document_frequency.items()}
    query_vector = _vector(documents[0], idf)
    scored = []
    for candidate, counts in zip(candidates, documents[1:]):
        vector = _vector(counts, idf)
        similarity = sum(weight * vector.get(term, 0.0) for term, weight in query_vector.items())
        if similarity >= threshold:
            scored.append((candidate, round(similarity, 4)))
    scored.sort(key=lambda pair: -pair[1])
    return scored[:limit]
