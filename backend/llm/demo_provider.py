"""An offline provider for the quickstart: canned test cases, real token counts, no spend."""
import hashlib
import json
import math
import re
import time

from backend.llm.base import Completion, Embeddings, Provider, ProviderStream, TokenUsage
from backend.llm.specs import DEMO
from backend.llm.tokenizer import count_chat_tokens, count_text_tokens

# The demo counts tokens as gpt-4o-mini (and its embeddings as text-embedding-3-small) would, so
# its figures look like real ones.
TOKENIZER_MODEL = "gpt-4o-mini"
EMBEDDING_TOKENIZER_MODEL = "text-embedding-3-small"
# Demo vectors: each word hashed to one of this many dimensions (the hashing trick), so texts that
# share words are similar, offline and the same in every process.
DEMO_DIMENSIONS = 256
_WORD = re.compile(r"[a-z0-9]{2,}")

_SCENARIOS = (
    ("Happy path", "valid input", "high", "functional"),
    ("Invalid input is rejected", "malformed or missing input", "high", "negative"),
    ("Boundary values", "values at the minimum and maximum limits", "medium", "boundary"),
    ("Empty state", "no existing data", "medium", "edge"),
    ("Unauthorised access is refused", "a user without permission", "critical", "security"),
    ("Repeated submission", "the same request sent twice", "medium", "edge"),
    ("Slow dependency", "a dependency that answers slowly", "low", "performance"),
    ("Special characters", "unicode and special characters", "low", "edge"),
)


class DemoProvider(Provider):
    spec = DEMO
    estimation = "tiktoken"
    default_model = DEMO.default_model

    @classmethod
    def from_config(cls, config):
        return cls()

    def count_input_tokens(self, messages, model):
        return count_chat_tokens(messages, TOKENIZER_MODEL)

    def count_output_tokens(self, text, model):
        return count_text_tokens(text, TOKENIZER_MODEL)

    def complete(self, messages, model, max_output_tokens):
        started = time.perf_counter()
        request = _requested(messages[-1]["content"])
        cases = [_case(request["feature"], i) for i in range(request["count"])]
        text = json.dumps({"testCases": cases}, indent=2)
        usage = TokenUsage(
            input_tokens=count_chat_tokens(messages, TOKENIZER_MODEL),
            output_tokens=count_text_tokens(text, TOKENIZER_MODEL),
        )
        return Completion(
            text=text,
            usage=usage,
            model=self.default_model,
            response_model=self.default_model,
            latency_ms=(time.perf_counter() - started) * 1000,
        )

    def stream(self, messages, model, max_output_tokens):
        completion = self.complete(messages, model, max_output_tokens)

        def produce(stream):
            for line in completion.text.splitlines(keepends=True):
                yield line
            stream.usage = completion.usage

        return ProviderStream(self.default_model, produce)

    def count_embedding_tokens(self, texts, model):
        return sum(count_text_tokens(text, EMBEDDING_TOKENIZER_MODEL) for text in texts)

    def embed(self, texts, model, dimensions=None):
        started = time.perf_counter()
        return Embeddings(vectors=[demo_vector(text) for text in texts],
                          usage=TokenUsage(input_tokens=self.count_embedding_tokens(texts, model), output_tokens=0),
                          model=self.spec.embedding_model, response_model=self.spec.embedding_model,
                          latency_ms=(time.perf_counter() - started) * 1000)


def demo_vector(text):
    """A unit vector of the words of `text`: each word adds +-1 at the dimension its hash picks."""
    vector = [0.0] * DEMO_DIMENSIONS
    for word in _WORD.findall(text.lower()) or [text]:
        digest = hashlib.blake2b(word.encode("utf-8", "replace"), digest_size=8).digest()
        index = int.from_bytes(digest[:4], "little") % DEMO_DIMENSIONS
        vector[index] += 1.0 if digest[4] & 1 else -1.0
    norm = math.sqrt(sum(value * value for value in vector))
    if not norm:  # the words cancelled out
        vector[0], norm = 1.0, 1.0
    return [value / norm for value in vector]


def _requested(user_message):
    count = re.search(r"exactly (\d+) test cases", user_message)
    feature = re.search(r"Feature:\n(.+)", user_message)
    return {
        "count": int(count.group(1)) if count else 5,
        "feature": (feature.group(1).strip() if feature else "the feature")[:80],
    }


def _case(feature, index):
    title, condition, priority, kind = _SCENARIOS[index % len(_SCENARIOS)]
    round_number = index // len(_SCENARIOS)
    suffix = f" (variant {round_number + 1})" if round_number else ""
    return {
        "title": f"{title}: {feature}{suffix}",
        "description": f"Check {feature} with {condition}.",
        "preconditions": ["The application is running", "A test user exists"],
        "steps": [f"Prepare {condition}", f"Exercise {feature}", "Observe the result"],
        "expectedResult": f"{feature} behaves correctly with {condition}.",
        "priority": priority,
        "type": kind,
    }
