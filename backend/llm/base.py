"""What every provider returns, normalised to the token convention of ARCHITECTURE.md.

inputTokens counts every prompt token (cached ones included), outputTokens every
generated token (reasoning included), totalTokens = inputTokens + outputTokens.
"""
from dataclasses import dataclass
from typing import ClassVar


@dataclass(frozen=True)
class TokenUsage:
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    reasoning_tokens: int = 0
    reported: bool = True

    def __post_init__(self):
        if self.cached_input_tokens > self.input_tokens:
            raise ValueError("cached input tokens cannot exceed input tokens")
        if self.reasoning_tokens > self.output_tokens:
            raise ValueError("reasoning tokens cannot exceed output tokens")

    @property
    def total_tokens(self):
        return self.input_tokens + self.output_tokens


NO_USAGE = TokenUsage(reported=False)


@dataclass(frozen=True)
class Completion:
    text: str
    usage: TokenUsage
    model: str
    response_model: str
    latency_ms: float


class Provider:
    """One LLM vendor behind its official SDK.

    `price_provider` is the provider id in the genai-prices table, or None when
    calls cost nothing (the offline demo).
    """

    name: ClassVar[str]
    price_provider: ClassVar[str | None] = None
    is_demo: ClassVar[bool] = False
    default_model: str

    @classmethod
    def from_config(cls, config):
        raise NotImplementedError

    def complete(self, messages, model, max_output_tokens):
        """Send chat messages [{role, content}] and return a Completion."""
        raise NotImplementedError
