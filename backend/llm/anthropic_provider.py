"""Claude through the official anthropic SDK (Messages API)."""
import time

import anthropic
import httpx2

from backend.errors import ProviderError, ProviderTimeout, ProviderUnavailable
from backend.llm.base import NO_USAGE, Completion, Provider, ProviderStream, TokenUsage, split_system

OVERLOADED = 529


class AnthropicProvider(Provider):
    name = "anthropic"
    price_provider = "anthropic"

    def __init__(self, api_key, default_model, base_url=None, timeout=60, max_retries=2, transport=None):
        self.default_model = default_model
        self.timeout = timeout
        self.client = anthropic.Anthropic(
            api_key=api_key,
            base_url=base_url,
            timeout=timeout,
            max_retries=max_retries,
            http_client=httpx2.Client(transport=transport) if transport is not None else None,
        )

    def _request(self, messages, model, max_output_tokens):
        system, rest = split_system(messages)
        request = {"model": model, "max_tokens": max_output_tokens, "messages": rest}
        if system:
            request["system"] = system
        return request

    def complete(self, messages, model, max_output_tokens):
        started = time.perf_counter()
        try:
            message = self.client.messages.create(**self._request(messages, model, max_output_tokens))
        except anthropic.APIError as exc:
            raise self._translate(exc) from exc
        return Completion(
            text="".join(block.text for block in message.content if block.type == "text"),
            usage=usage_from_anthropic(message.usage),
            model=model,
            response_model=message.model or model,
            latency_ms=(time.perf_counter() - started) * 1000,
        )

    def stream(self, messages, model, max_output_tokens):
        try:
            events = self.client.messages.create(stream=True, **self._request(messages, model, max_output_tokens))
        except anthropic.APIError as exc:
            raise self._translate(exc) from exc

        def produce(stream):
            started_usage = None
            try:
                for event in events:
                    if event.type == "message_start":
                        stream.response_model = event.message.model or stream.response_model
                        started_usage = event.message.usage
                        stream.usage = usage_from_anthropic(started_usage)
                    elif event.type == "content_block_delta" and event.delta.type == "text_delta":
                        yield event.delta.text
                    elif event.type == "message_delta" and event.usage is not None:
                        # message_delta carries the cumulative output count (and may restate input).
                        stream.usage = usage_from_anthropic(started_usage, event.usage)
            except (anthropic.APIError, httpx2.HTTPError) as exc:
                raise self._translate(exc) from exc

        return ProviderStream(model, produce, close=events.close)

    def _translate(self, exc):
        if isinstance(exc, (anthropic.APITimeoutError, httpx2.TimeoutException)):
            return ProviderTimeout(f"Anthropic did not answer within {self.timeout} seconds")
        if isinstance(exc, (anthropic.APIConnectionError, httpx2.HTTPError)):
            return ProviderUnavailable("Could not connect to the Anthropic API, or the connection broke")
        if isinstance(exc, anthropic.RateLimitError):
            return ProviderUnavailable("Anthropic rate limit reached; try again later")
        if isinstance(exc, anthropic.APIStatusError):
            if exc.status_code == OVERLOADED:
                return ProviderUnavailable("Anthropic is overloaded; try again later")
            return ProviderError(f"Anthropic returned HTTP {exc.status_code}: {_short(exc)}")
        return ProviderError(f"Anthropic request failed: {_short(exc)}")


def usage_from_anthropic(usage, delta=None):
    """Anthropic's input_tokens exclude cache reads and writes; we count all three as input."""
    if usage is None and delta is None:
        return NO_USAGE

    def count(name):
        for source in (delta, usage):
            value = getattr(source, name, None) if source is not None else None
            if value is not None:
                return value
        return 0

    cache_read = count("cache_read_input_tokens")
    cache_write = count("cache_creation_input_tokens")
    return TokenUsage(
        input_tokens=count("input_tokens") + cache_read + cache_write,
        cached_input_tokens=cache_read,
        cache_write_tokens=cache_write,
        output_tokens=count("output_tokens"),
    )


def _short(exc):
    body = getattr(exc, "body", None)
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return str(body["error"].get("message", ""))[:300]
    return str(getattr(exc, "message", exc))[:300]
