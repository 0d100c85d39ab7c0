"""Gemini through the official google-genai SDK (the successor of google-generativeai)."""
import itertools
import logging
import time

import httpx2
from google import genai
from google.genai import errors, types

from backend.errors import ProviderError, ProviderTimeout, ProviderUnavailable
from backend.llm.base import (
    NO_USAGE,
    Completion,
    Embeddings,
    Provider,
    ProviderStream,
    UnreadableReply,
    broken_connection,
    failure,
    reported_usage,
    split_system,
)
from backend.llm.specs import GEMINI

log = logging.getLogger(__name__)


class GeminiProvider(Provider):
    spec = GEMINI

    def __init__(self, api_key, default_model, base_url=None, timeout=60, transport=None):
        self.default_model = default_model
        self.timeout = timeout
        options = types.HttpOptions(
            base_url=base_url,
            timeout=timeout * 1000,
            # Retries happen in the generation transaction, only where they cannot bill twice.
            retry_options=types.HttpRetryOptions(attempts=1),
            httpx_client=httpx2.Client(transport=transport, timeout=timeout) if transport is not None else None,
        )
        self.client = genai.Client(api_key=api_key, http_options=options)

    def _request(self, messages, model, max_output_tokens):
        system, rest = split_system(messages)
        contents = [
            types.Content(role="model" if m["role"] == "assistant" else "user", parts=[types.Part(text=m["content"])])
            for m in rest
        ]
        config = types.GenerateContentConfig(system_instruction=system or None, max_output_tokens=max_output_tokens)
        return {"model": model, "contents": contents, "config": config}

    def complete(self, messages, model, max_output_tokens):
        started = time.perf_counter()
        try:
            response = self.client.models.generate_content(**self._request(messages, model, max_output_tokens))
            text, usage = _text_of(response), usage_from_gemini(response.usage_metadata)
            response_model = response.model_version
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
            chunks = self.client.models.generate_content_stream(**self._request(messages, model, max_output_tokens))
            # The SDK sends the request when its first chunk is asked for: ask here, so that a
            # refusal (a rate limit, an overloaded server) is retried like a plain call's.
            first = next(chunks, None)
        except Exception as exc:
            raise self._translate(exc) from exc

        def produce(stream):
            try:
                for chunk in itertools.chain([first] if first is not None else [], chunks):
                    stream.started = True
                    stream.response_model = chunk.model_version or stream.response_model
                    # Every chunk carries the usage so far and the last one is final: usage is
                    # final only when the last chunk carried it.
                    stream.usage_final = chunk.usage_metadata is not None
                    if chunk.usage_metadata is not None:
                        stream.usage = usage_from_gemini(chunk.usage_metadata)
                    text = _text_of(chunk)
                    if text:
                        yield text
            except Exception as exc:
                raise self._translate(exc) from exc

        return ProviderStream(model, produce, close=getattr(chunks, "close", None))

    def embed(self, texts, model, dimensions=None):
        """batchEmbedContents. Gemini's embedding replies carry no token count (usage_metadata is
        read when one comes): the free countTokens API counts the texts, and when that fails too
        the call is recorded as an estimate."""
        started = time.perf_counter()
        config = types.EmbedContentConfig(output_dimensionality=dimensions) if dimensions else None
        try:
            response = self.client.models.embed_content(model=model, contents=texts, config=config)
            vectors = [embedding.values for embedding in response.embeddings or []]
            usage = usage_from_gemini(response.usage_metadata, embedding=True)
        except Exception as exc:
            raise self._translate(exc) from exc
        latency_ms = (time.perf_counter() - started) * 1000
        if not usage.reported:
            usage = self._counted(texts, model)
        return Embeddings(vectors=vectors, usage=usage, model=model, response_model=model, latency_ms=latency_ms)

    def _counted(self, texts, model):
        """The texts' tokens by Gemini's countTokens (no charge), or NO_USAGE when it cannot say."""
        try:
            counted = self.client.models.count_tokens(model=model, contents=texts).total_tokens
        except Exception as exc:
            log.warning("Gemini could not count the tokens of an embedding call (%s); it is recorded as an estimate",
                        str(exc)[:200])
            return NO_USAGE
        return reported_usage(counted, 0)

    def _translate(self, exc):
        if isinstance(exc, httpx2.TimeoutException):
            return failure(ProviderTimeout(f"Gemini did not answer within {self.timeout} seconds"), maybe_billed=True)
        if isinstance(exc, httpx2.HTTPError):
            return broken_connection(
                ProviderUnavailable("Could not connect to the Gemini API, or the connection broke"), exc)
        if isinstance(exc, errors.APIError):
            if exc.code == 429:
                return failure(ProviderUnavailable("Gemini rate limit or quota reached; try again later"),
                               retryable=True)
            detail = str(exc.message or exc.status or "")[:300]
            return failure(ProviderError(f"Gemini returned HTTP {exc.code}: {detail}"),
                           retryable=isinstance(exc.code, int) and exc.code >= 500)
        return failure(UnreadableReply(f"Gemini's reply could not be read: {str(exc)[:200]}"), maybe_billed=True)


def _text_of(response):
    parts = []
    for candidate in response.candidates or []:
        for part in (candidate.content.parts if candidate.content else None) or []:
            if part.text and not part.thought:
                parts.append(part.text)
        break
    return "".join(parts)


def usage_from_gemini(metadata, embedding=False):
    """prompt_token_count includes cached content; thoughts are generated on top of candidates."""
    if metadata is None or metadata.prompt_token_count is None:
        return NO_USAGE
    if embedding:
        return reported_usage(metadata.prompt_token_count, 0)
    thoughts = metadata.thoughts_token_count or 0
    return reported_usage(
        metadata.prompt_token_count + (metadata.tool_use_prompt_token_count or 0),
        (metadata.candidates_token_count or 0) + thoughts,
        cached_input_tokens=metadata.cached_content_token_count or 0,
        reasoning_tokens=thoughts,
    )
