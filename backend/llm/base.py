"""What every provider returns, normalised to the token convention of ARCHITECTURE.md.

inputTokens counts every prompt token (cached reads and cache writes included),
outputTokens every generated token (reasoning included),
totalTokens = inputTokens + outputTokens.
"""
import logging
import math
import time
from dataclasses import dataclass
from typing import ClassVar

import httpx
import httpx2

from backend.errors import ProviderError
from backend.llm.specs import ProviderSpec

log = logging.getLogger("backend.llm")
# No single call reports more tokens than this; a larger (or negative, or fractional) count is
# a provider bug, treated as no usage reported rather than written to the ledger.
MAX_CALL_TOKENS = 10**9


@dataclass(frozen=True)
class TokenUsage:
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    # reported: the provider sent usage at all; complete: it sent every count we read.
    reported: bool = True
    complete: bool = True

    def __post_init__(self):
        if self.cached_input_tokens + self.cache_write_tokens > self.input_tokens:
            raise ValueError("cached and cache-write tokens cannot exceed input tokens")
        if self.reasoning_tokens > self.output_tokens:
            raise ValueError("reasoning tokens cannot exceed output tokens")

    @property
    def total_tokens(self):
        return self.input_tokens + self.output_tokens


NO_USAGE = TokenUsage(reported=False, complete=False)


def _count(value):
    """A reported count as an int, or None when it is not a sane one."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if value != int(value) or not 0 <= value <= MAX_CALL_TOKENS:
        return None
    return int(value)


def reported_usage(input_tokens, output_tokens, cached_input_tokens=0, cache_write_tokens=0, reasoning_tokens=0,
                   complete=True):
    """The TokenUsage of counts a provider reported, checked: a missing or impossible input or output
    count means no usage (the call is then estimated); an impossible part (cached, cache writes,
    reasoning) is cut to what fits and the usage marked incomplete."""
    input_count, output_count = _count(input_tokens), _count(output_tokens)
    if input_count is None or output_count is None:
        log.warning("Unusable usage reported (input %r, output %r): treated as not reported", input_tokens,
                    output_tokens)
        return NO_USAGE
    parts = [_count(value) for value in (cached_input_tokens, cache_write_tokens, reasoning_tokens)]
    cached = min(parts[0] or 0, input_count)
    write = min(parts[1] or 0, input_count - cached)
    reasoning = min(parts[2] or 0, output_count)
    sane = [value or 0 for value in parts] == [cached, write, reasoning] and None not in parts
    return TokenUsage(input_tokens=input_count, output_tokens=output_count, cached_input_tokens=cached,
                      cache_write_tokens=write, reasoning_tokens=reasoning, complete=complete and sane)


class UnreadableReply(ProviderError):
    default_message = "The language model provider's reply could not be read"


def failure(error, *, retryable=False, maybe_billed=False):
    """Mark a translated provider error. `retryable`: the request never reached the model (no
    connection, a rate limit, an overloaded or failing server), so trying again cannot bill twice.
    `maybe_billed`: the provider may have run the call (a timeout, a connection broken after the
    request was sent, a reply that could not be read), so it is recorded as an estimate."""
    error.retryable, error.maybe_billed = retryable, maybe_billed
    return error


def never_sent(exc):
    """True when the request cannot have reached the provider: the connection was never made."""
    while exc is not None:
        if isinstance(exc, (httpx.ConnectError, httpx2.ConnectError)):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def broken_connection(error, exc):
    """A connection error: retryable when nothing was sent, else the call may have been billed."""
    sent = not never_sent(exc)
    return failure(error, retryable=not sent, maybe_billed=sent)


@dataclass(frozen=True)
class Completion:
    text: str
    usage: TokenUsage
    model: str
    response_model: str
    latency_ms: float


@dataclass(frozen=True)
class Embeddings:
    """One embedding call's answer: a vector per text, in the order sent, and its usage (input only)."""

    vectors: list
    usage: TokenUsage
    model: str
    response_model: str
    latency_ms: float


# An embedding provider may read this much of each text; a longer one is cut (at a character), so
# no input passes a model's limit (8,192 tokens for OpenAI's; a token stands for at least a byte).
MAX_EMBEDDING_BYTES = 8_000
# Vectors are kept as float32: a larger value would overflow to infinity.
FLOAT32_MAX = 3.4028234663852886e38


def embedding_input(text):
    """`text` as an embedding call sends it: at most MAX_EMBEDDING_BYTES of UTF-8, never empty."""
    data = text.encode("utf-8", "replace")[:MAX_EMBEDDING_BYTES]
    return data.decode("utf-8", "ignore").strip() or "(empty)"


def checked_vectors(vectors, count):
    """The vectors of a reply, as lists of floats: `count` of them, one length, finite and not all
    zero; anything else is an unreadable reply (the call ran: it is recorded, estimated)."""
    try:
        rows = [[float(value) for value in vector] for vector in vectors]
    except (TypeError, ValueError):
        rows = None
    if rows is None or len(rows) != count or not rows or len({len(row) for row in rows}) != 1 or not rows[0]:
        raise failure(UnreadableReply(f"The embedding reply holds no usable vector per text ({count} sent)"),
                      maybe_billed=True)
    if any(not all(math.isfinite(value) and abs(value) <= FLOAT32_MAX for value in row) or not any(row)
           for row in rows):
        raise failure(UnreadableReply("The embedding reply holds a vector that is not finite (as float32) or is "
                                      "all zero"), maybe_billed=True)
    return rows


class ProviderStream:
    """A streamed completion, read one text delta at a time with `read()`.

    `produce(stream)` is the provider's generator; it yields text and keeps
    `stream.usage` and `stream.response_model` up to date as the provider reports
    them, so a stream that breaks or is abandoned still knows what was reported.
    `finished` becomes true when the provider ended the stream itself; only then, and
    when `usage_final` (the provider's last usage report was its final one), is the
    reported usage final.
    """

    def __init__(self, model, produce, close=None):
        self.model = model
        self.response_model = model
        self.usage = None
        self.usage_final = True
        # started: the provider sent something, so the call ran; finished: it ended the stream itself.
        self.started = False
        self.finished = False
        self._deltas = produce(self)
        self._close = close
        self._parts = []
        self._started = time.perf_counter()

    def read(self):
        """The next text delta, or None once the provider has ended the stream."""
        while not self.finished:
            try:
                delta = next(self._deltas)
            except StopIteration:
                self.finished = True
                return None
            # An SDK passes a server's JSON through unchecked: what is not text is not part of the reply.
            if isinstance(delta, str):
                self._parts.append(delta)
                return delta
        return None

    def __iter__(self):
        while (delta := self.read()) is not None:
            yield delta

    @property
    def text(self):
        return "".join(self._parts)

    @property
    def latency_ms(self):
        return (time.perf_counter() - self._started) * 1000

    def close(self):
        self._deltas.close()
        if self._close is not None:
            self._close()


class Provider:
    """One LLM vendor behind its official SDK, declared by its `spec` (backend/llm/specs.py).

    `name`, `price_provider` (the provider id in the genai-prices table, or None when
    calls cost nothing), `free_reason` (then why, recorded as the price source) and
    `is_demo` are the declaration's, copied onto each subclass.
    """

    spec: ClassVar[ProviderSpec]
    name: ClassVar[str]
    price_provider: ClassVar[str | None]
    free_reason: ClassVar[str]
    is_demo: ClassVar[bool]
    # How this provider's prompts are counted before a call; "tiktoken" only where exact.
    estimation: ClassVar[str] = "byte_bound"
    default_model: str

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        # The declaration states these once; pricing and the ledger read them from the provider.
        cls.name, cls.price_provider = cls.spec.name, cls.spec.price_provider
        cls.free_reason, cls.is_demo = cls.spec.free_reason, cls.spec.is_demo

    @classmethod
    def from_config(cls, config):
        """Hosted providers read <NAME>_API_KEY and <NAME>_BASE_URL; local ones override this."""
        prefix = cls.name.upper()
        return cls(
            api_key=config[f"{prefix}_API_KEY"],
            default_model=config["LLM_MODELS"][cls.name],
            base_url=config[f"{prefix}_BASE_URL"],
            timeout=config["LLM_TIMEOUT_SECONDS"],
            transport=config.get("LLM_TRANSPORTS", {}).get(cls.name),
        )

    def count_input_tokens(self, messages, model):
        """Tokens the messages can take at most (reservations and estimates; see byte_bound)."""
        return byte_bound(messages)

    def count_output_tokens(self, text, model):
        """Tokens the text can take at most."""
        return utf8_length(text)

    def complete(self, messages, model, max_output_tokens):
        """Send chat messages [{role, content}] and return a Completion."""
        raise NotImplementedError

    def stream(self, messages, model, max_output_tokens):
        """Send chat messages and return a ProviderStream."""
        raise NotImplementedError

    def count_embedding_tokens(self, texts, model):
        """Tokens the texts of an embedding call can take at most (its reservation and estimate)."""
        return sum(utf8_length(text) for text in texts)

    def embed(self, texts, model, dimensions=None):
        """Embed each text (one call for all) and return Embeddings; providers without an embeddings
        API are refused by the configuration (EMBEDDING_PROVIDER)."""
        raise NotImplementedError(f"{self.name} has no embeddings API")


# Room for the chat template around each message (role markers, separators) and the
# reply primer; generous for every chat template we know.
TEMPLATE_TOKENS_PER_MESSAGE = 16
TEMPLATE_TOKENS_FIXED = 64


def utf8_length(text):
    return len(text.encode("utf-8", "surrogatepass"))


def byte_bound(messages):
    """An upper bound on the prompt tokens of any byte-level tokenizer: each token stands for at
    least one byte of UTF-8 text (byte-level BPE as in GPT, Llama and Claude; SentencePiece with
    byte fallback as in Gemini), so a text has at most as many tokens as bytes. Used where the
    provider's exact tokenizer is not available offline, so a reservation never falls short on
    CJK or emoji; it overestimates Latin text about fourfold, which only a reservation sees."""
    return TEMPLATE_TOKENS_FIXED + sum(TEMPLATE_TOKENS_PER_MESSAGE + utf8_length(m["content"]) for m in messages)


def split_system(messages):
    """(system text, other messages): for SDKs that take the system prompt separately."""
    system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
    return system, [m for m in messages if m["role"] != "system"]
