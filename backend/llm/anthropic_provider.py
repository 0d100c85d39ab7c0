"""Claude through the official anthropic SDK (Messages API)."""
import time

import anthropic
import httpx2

from backend.errors import ProviderError, ProviderTimeout, ProviderUnavailable
from backend.llm.base import (
    NO_USAGE,
    Completion,
    Provider,
    ProviderStream,
    UnreadableReply,
    broken_connection,
    failure,
    reported_usage,
    split_system,
)
from backend.llm.specs import ANTHROPIC

OVERLOADED = 529


class AnthropicProvider(Provider):
    spec = ANTHROPIC

    def __init__(self, api_key, default_model, base_url=None, timeout=60, transport=None):
        self.default_model = default_model
        self.timeout = timeout
        self.client = anthropic.Anthropic(
            api_key=api_key,
            base_url=base_url,
            timeout=timeout,
            # Retries happen in the generation transaction, only where they cannot bill twice.
            max_retries=0,
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
            texts = [block.text for block in message.content if block.type == "text"]
            # A text that is no string leaves the reply unreadable (finish_call), its usage kept.
            text = "".join(texts) if all(isinstance(part, str) for part in texts) else texts
            usage, response_model = usage_from_anthropic(message.usage), message.model
        except Exception as exc:
            raise self._translate(exc) from exc
        return Completion(
            text=text,
            usage=usage,
            model=model,
            response_model=response_model or model,
            latency_ms=(time.perf_counter() - started) * 1000,
        )

    def stream(self, messages, model, max_output_tokens):
        try:
            events = self.client.messages.create(stream=True, **self._request(messages, model, max_output_tokens))
        except Exception as exc:
            raise self._translate(exc) from exc

        def produce(stream):
            started_usage = None
            try:
                for event in events:
                    stream.started = True
                    if event.type == "message_start":
                        stream.response_model = event.message.model or stream.response_model
                        started_usage = event.message.usage
                        stream.usage = usage_from_anthropic(started_usage)
                        # Its output count is a placeholder until message_delta gives the final one.
                        stream.usage_final = False
                    elif event.type == "content_block_delta" and event.delta.type == "text_delta":
                        yield event.delta.text
                    elif event.type == "message_delta" and event.usage is not None:
                        # message_delta carries the cumulative output count (and may restate input).
                        stream.usage = usage_from_anthropic(started_usage, event.usage)
                        stream.usage_final = getattr(event.usage, "output_tokens", None) is not None
            except Exception as exc:
                raise self._translate(exc) from exc

        return ProviderStream(model, produce, close=events.close)

    def _translate(self, exc):
        if isinstance(exc, (anthropic.APITimeoutError, httpx2.TimeoutException)):
            return failure(ProviderTimeout(f"Anthropic did not answer within {self.timeout} seconds"),
                           maybe_billed=True)
        if isinstance(exc, (anthropic.APIConnectionError, httpx2.HTTPError)):
            return broken_connection(
                ProviderUnavailable("Could not connect to the Anthropic API, or the connection broke"), exc)
        if isinstance(exc, anthropic.RateLimitError):
            return failure(ProviderUnavailable("Anthropic rate limit reached; try again later"), retryable=True)
        if isinstance(exc, anthropic.APIStatusError):
            if exc.status_code == OVERLOADED:
                return failure(ProviderUnavailable("Anthropic is overloaded; try again later"), retryable=True)
            return failure(ProviderError(f"Anthropic returned HTTP {exc.status_code}: {_short(exc)}"),
                           retryable=exc.status_code >= 500)
        # A 200 whose body the SDK could not read, or an error event in a started stream: the call ran.
        return failure(UnreadableReply(f"Anthropic's reply could not be read: {_short(exc)}"), maybe_billed=True)


def usage_from_anthropic(usage, delta=None):
    """Anthropic's input_tokens exclude cache reads and writes; we count all three as input."""
    if usage is None and delta is None:
        return NO_USAGE

    def count(name, missing):
        for source in (delta, usage):
            value = getattr(source, name, None) if source is not None else None
            if value is not None:
                return value
        return missing

    # Input and output counts are always sent: without one there is no usage (an estimate); the
    # cache counts are left out when there was no caching.
    parts = [count("input_tokens", None), count("cache_read_input_tokens", 0), count("cache_creation_input_tokens", 0)]
    if not all(isinstance(part, int) and not isinstance(part, bool) and part >= 0 for part in parts):
        return reported_usage(None, None)
    uncached, cache_read, cache_write = parts
    return reported_usage(uncached + cache_read + cache_write, count("output_tokens", None),
                          cached_input_tokens=cache_read, cache_write_tokens=cache_write)


def _short(exc):
    body = getattr(exc, "body", None)
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return str(body["error"].get("message", ""))[:300]
    return str(getattr(exc, "message", exc))[:300]
