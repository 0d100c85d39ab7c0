"""OpenAI chat completions through the official SDK; any OpenAI-compatible server via base_url."""
import time

import httpx2
import openai

from backend.errors import ProviderError, ProviderTimeout, ProviderUnavailable
from backend.llm.base import (
    NO_USAGE,
    Completion,
    Embeddings,
    Provider,
    ProviderStream,
    UnreadableReply,
    broken_connection,
    byte_bound,
    failure,
    reported_usage,
    utf8_length,
)
from backend.llm.specs import OPENAI
from backend.llm.tokenizer import count_chat_tokens, count_text_tokens


class OpenAIProvider(Provider):
    spec = OPENAI

    def __init__(self, api_key, default_model, base_url=None, timeout=60, transport=None):
        self.default_model = default_model
        http_client = httpx2.Client(transport=transport) if transport is not None else None
        self.client = openai.OpenAI(
            api_key=api_key,
            base_url=base_url,
            timeout=timeout,
            # Retries happen in the generation transaction, only where they cannot bill twice.
            max_retries=0,
            http_client=http_client,
        )
        # OpenAI's own API wants max_completion_tokens; compatible servers know max_tokens.
        self.max_tokens_field = "max_tokens" if base_url else "max_completion_tokens"
        self.timeout = timeout
        # tiktoken is exact for OpenAI's own models; a compatible server may run any model.
        self.estimation = "tiktoken" if base_url is None else "byte_bound"

    def count_input_tokens(self, messages, model):
        if self.estimation == "tiktoken":
            return count_chat_tokens(messages, model)
        return byte_bound(messages)

    def count_output_tokens(self, text, model):
        if self.estimation == "tiktoken":
            return count_text_tokens(text, model)
        return utf8_length(text)

    def complete(self, messages, model, max_output_tokens):
        started = time.perf_counter()
        try:
            response = self.client.chat.completions.create(
                model=model, messages=messages, **{self.max_tokens_field: max_output_tokens}
            )
            # No choices (a filtered reply) still reports the usage the provider billed.
            text = (response.choices[0].message.content or "") if response.choices else ""
            usage, response_model = usage_from_openai(response.usage), response.model
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
            response = self.client.chat.completions.create(
                model=model,
                messages=messages,
                stream=True,
                stream_options={"include_usage": True},
                **{self.max_tokens_field: max_output_tokens},
            )
        except Exception as exc:
            raise self._translate(exc) from exc

        def produce(stream):
            try:
                for chunk in response:
                    stream.started = True
                    stream.response_model = chunk.model or stream.response_model
                    if chunk.usage is not None:
                        stream.usage = usage_from_openai(chunk.usage)
                    for choice in chunk.choices:
                        if choice.delta and choice.delta.content:
                            yield choice.delta.content
            except Exception as exc:
                raise self._translate(exc) from exc

        return ProviderStream(model, produce, close=response.close)

    def count_embedding_tokens(self, texts, model):
        if self.estimation == "tiktoken":
            return sum(count_text_tokens(text, model) for text in texts)
        return super().count_embedding_tokens(texts, model)

    def embed(self, texts, model, dimensions=None):
        """The SDK asks for base64 vectors (a quarter of the JSON) and decodes them itself."""
        started = time.perf_counter()
        try:
            response = self.client.embeddings.create(
                model=model, input=texts, **({"dimensions": dimensions} if dimensions else {}))
            rows = sorted(response.data, key=lambda item: item.index)
            usage = reported_usage(response.usage.prompt_tokens, 0) if response.usage else NO_USAGE
            # One vector per text, in order: indices other than 0..n-1 say nothing about which is whose.
            in_order = [row.index for row in rows] == list(range(len(rows)))
            vectors, response_model = [row.embedding for row in rows] if in_order else [], response.model
        except Exception as exc:
            raise self._translate(exc) from exc
        return Embeddings(vectors=vectors, usage=usage, model=model,
                          response_model=response_model or model, latency_ms=(time.perf_counter() - started) * 1000)

    def _translate(self, exc):
        if isinstance(exc, (openai.APITimeoutError, httpx2.TimeoutException)):
            return failure(ProviderTimeout(f"OpenAI did not answer within {self.timeout} seconds"), maybe_billed=True)
        if isinstance(exc, (openai.APIConnectionError, httpx2.HTTPError)):
            return broken_connection(
                ProviderUnavailable("Could not connect to the OpenAI API, or the connection broke"), exc)
        if isinstance(exc, openai.RateLimitError):
            return failure(ProviderUnavailable("OpenAI rate limit or quota reached; try again later"), retryable=True)
        if isinstance(exc, openai.APIStatusError):
            return failure(ProviderError(f"OpenAI returned HTTP {exc.status_code}: {_short(exc)}"),
                           retryable=exc.status_code >= 500)
        # A 200 whose body the SDK could not read: the call ran.
        return failure(UnreadableReply(f"OpenAI's reply could not be read: {str(exc)[:200]}"), maybe_billed=True)


def usage_from_openai(usage):
    """prompt_tokens already include cached reads (cached_tokens) and cache writes
    (cache_write_tokens), and completion_tokens reasoning ones."""
    if usage is None:
        return NO_USAGE
    prompt_details = getattr(usage, "prompt_tokens_details", None)
    completion_details = getattr(usage, "completion_tokens_details", None)
    return reported_usage(
        usage.prompt_tokens,
        usage.completion_tokens,
        cached_input_tokens=(prompt_details.cached_tokens or 0) if prompt_details else 0,
        cache_write_tokens=(getattr(prompt_details, "cache_write_tokens", None) or 0) if prompt_details else 0,
        reasoning_tokens=(completion_details.reasoning_tokens or 0) if completion_details else 0,
    )


def _short(exc):
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        detail = body.get("error", body)
        if isinstance(detail, dict) and detail.get("message"):
            return str(detail["message"])[:300]
    return str(getattr(exc, "message", exc))[:300]
