"""Local models through the official ollama SDK. Local calls cost nothing."""
import logging
import time

import httpx
import ollama

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
)
from backend.llm.specs import OLLAMA

log = logging.getLogger(__name__)


class OllamaProvider(Provider):
    spec = OLLAMA

    def __init__(self, host, default_model, timeout=60, transport=None):
        self.default_model = default_model
        self.host = host
        self.timeout = timeout
        extra = {"transport": transport} if transport is not None else {}
        self.client = ollama.Client(host=host, timeout=timeout, **extra)

    @classmethod
    def from_config(cls, config):
        return cls(
            host=config["OLLAMA_HOST"],
            default_model=config["LLM_MODELS"]["ollama"],
            timeout=config["LLM_TIMEOUT_SECONDS"],
            transport=config.get("LLM_TRANSPORTS", {}).get(cls.name),
        )

    def _options(self, max_output_tokens):
        return {"num_predict": max_output_tokens}

    def complete(self, messages, model, max_output_tokens):
        started = time.perf_counter()
        try:
            response = self.client.chat(model=model, messages=messages, options=self._options(max_output_tokens))
            text, usage, response_model = response.message.content or "", usage_from_ollama(response), response.model
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
            chunks = self.client.chat(
                model=model, messages=messages, options=self._options(max_output_tokens), stream=True
            )
        except Exception as exc:
            raise self._translate(exc) from exc

        def produce(stream):
            try:
                for chunk in chunks:
                    stream.started = True
                    stream.response_model = chunk.model or stream.response_model
                    if chunk.message and chunk.message.content:
                        yield chunk.message.content
                    # Counts arrive only on the final chunk (done: true).
                    if chunk.done:
                        stream.usage = usage_from_ollama(chunk)
            except Exception as exc:
                raise self._translate(exc) from exc

        return ProviderStream(model, produce, close=getattr(chunks, "close", None))

    def embed(self, texts, model, dimensions=None):
        started = time.perf_counter()
        try:
            response = self.client.embed(model=model, input=texts, dimensions=dimensions)
            vectors, response_model = response.embeddings, response.model
            # Ollama counts the texts it embedded in prompt_eval_count; nothing is generated.
            prompt = response.prompt_eval_count
            usage = reported_usage(prompt, 0) if prompt is not None else NO_USAGE
        except Exception as exc:
            raise self._translate(exc) from exc
        return Embeddings(vectors=vectors, usage=usage, model=model,
                          response_model=response_model or model, latency_ms=(time.perf_counter() - started) * 1000)

    def _translate(self, exc):
        if isinstance(exc, httpx.TimeoutException):
            return failure(ProviderTimeout(f"Ollama did not answer within {self.timeout} seconds"), maybe_billed=True)
        unavailable = ProviderUnavailable(f"Could not connect to Ollama at {self.host}, or the connection broke")
        if isinstance(exc, ConnectionError):
            # The SDK turns httpx.ConnectError into the built-in ConnectionError: nothing was sent.
            return failure(unavailable, retryable=True)
        if isinstance(exc, httpx.HTTPError):
            return broken_connection(unavailable, exc)
        if isinstance(exc, ollama.ResponseError):
            return failure(ProviderError(f"Ollama returned HTTP {exc.status_code}: {str(exc.error)[:300]}"),
                           retryable=exc.status_code >= 500)
        return failure(UnreadableReply(f"Ollama's reply could not be read: {str(exc)[:200]}"), maybe_billed=True)


def usage_from_ollama(response):
    """prompt_eval_count / eval_count (seed 003). Ollama omits prompt_eval_count when the
    prompt came from its cache; an absent count is recorded as 0 and flagged incomplete."""
    prompt, generated = response.prompt_eval_count, response.eval_count
    complete = prompt is not None and generated is not None
    if not complete:
        log.warning("Ollama omitted %s for model %s; recorded as 0",
                    " and ".join(name for name, value in (("prompt_eval_count", prompt), ("eval_count", generated))
                                 if value is None), response.model)
    return reported_usage(prompt or 0, generated or 0, complete=complete)
