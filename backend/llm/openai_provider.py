"""OpenAI chat completions through the official SDK; any OpenAI-compatible server via base_url."""
import time

import httpx2
import openai

from backend.errors import ProviderError, ProviderTimeout, ProviderUnavailable
from backend.llm.base import NO_USAGE, Completion, Provider, ProviderStream, TokenUsage, byte_bound, utf8_length
from backend.llm.tokenizer import count_chat_tokens, count_text_tokens


class OpenAIProvider(Provider):
    name = "openai"
    price_provider = "openai"

    def __init__(self, api_key, default_model, base_url=None, timeout=60, max_retries=2, transport=None):
        self.default_model = default_model
        http_client = httpx2.Client(transport=transport) if transport is not None else None
        self.client = openai.OpenAI(
            api_key=api_key,
            base_url=base_url,
            timeout=timeout,
            max_retries=max_retries,
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
        except openai.APIError as exc:
            raise self._translate(exc) from exc
        if not response.choices:
            raise ProviderError("OpenAI returned no choices")
        return Completion(
            text=response.choices[0].message.content or "",
            usage=usage_from_openai(response.usage),
            model=model,
            response_model=response.model or model,
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
        except openai.APIError as exc:
            raise self._translate(exc) from exc

        def produce(stream):
            try:
                for chunk in response:
                    stream.response_model = chunk.model or stream.response_model
                    if chunk.usage is not None:
                        stream.usage = usage_from_openai(chunk.usage)
                    for choice in chunk.choices:
                        if choice.delta and choice.delta.content:
                            yield choice.delta.content
            except (openai.APIError, httpx2.HTTPError) as exc:
                raise self._translate(exc) from exc

        return ProviderStream(model, produce, close=response.close)

    def _translate(self, exc):
        if isinstance(exc, (openai.APITimeoutError, httpx2.TimeoutException)):
            return ProviderTimeout(f"OpenAI did not answer within {self.timeout} seconds")
        if isinstance(exc, (openai.APIConnectionError, httpx2.HTTPError)):
            return ProviderUnavailable("Could not connect to the OpenAI API, or the connection broke")
        if isinstance(exc, openai.RateLimitError):
            return ProviderUnavailable("OpenAI rate limit or quota reached; try again later")
        if isinstance(exc, openai.APIStatusError):
            return ProviderError(f"OpenAI returned HTTP {exc.status_code}: {_short(exc)}")
        return ProviderError(f"OpenAI request failed: {_short(exc)}")


def usage_from_openai(usage):
    """prompt_tokens already include cached ones and completion_tokens reasoning ones."""
    if usage is None:
        return NO_USAGE
    prompt_details = getattr(usage, "prompt_tokens_details", None)
    completion_details = getattr(usage, "completion_tokens_details", None)
    return TokenUsage(
        input_tokens=usage.prompt_tokens or 0,
        output_tokens=usage.completion_tokens or 0,
        cached_input_tokens=(prompt_details.cached_tokens or 0) if prompt_details else 0,
        reasoning_tokens=(completion_details.reasoning_tokens or 0) if completion_details else 0,
    )


def _short(exc):
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        detail = body.get("error", body)
        if isinstance(detail, dict) and detail.get("message"):
            return str(detail["message"])[:300]
    return str(getattr(exc, "message", exc))[:300]
