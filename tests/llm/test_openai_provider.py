import httpx2
import pytest

from backend.errors import ProviderError, ProviderTimeout, ProviderUnavailable
from backend.llm.openai_provider import OpenAIProvider
from tests.helpers import FakeLLMServer, chat_completion

MESSAGES = [{"role": "user", "content": "hi"}]


def provider(fake, base_url=None):
    return OpenAIProvider(api_key="sk-test", default_model="gpt-4o-mini", base_url=base_url,
                          timeout=5, transport=fake.transport)


def test_usage_follows_the_token_convention_with_cached_and_reasoning_tokens():
    fake = FakeLLMServer()
    fake.reply(chat_completion("hello", prompt_tokens=2006, completion_tokens=300, cached=1920, reasoning=192,
                               model="o4-mini-2025-04-16"))
    completion = provider(fake).complete(MESSAGES, "o4-mini", 1000)
    usage = completion.usage
    assert (usage.input_tokens, usage.cached_input_tokens) == (2006, 1920)
    assert (usage.output_tokens, usage.reasoning_tokens) == (300, 192)
    assert usage.total_tokens == 2306 and usage.reported
    assert (completion.text, completion.model, completion.response_model) == ("hello", "o4-mini", "o4-mini-2025-04-16")


def test_openai_itself_gets_max_completion_tokens():
    fake = FakeLLMServer()
    fake.reply(chat_completion("x", 1, 1))
    provider(fake).complete(MESSAGES, "gpt-4o-mini", 123)
    request = fake.requests[0]
    assert request["url"] == "https://api.openai.com/v1/chat/completions"
    assert request["json"]["max_completion_tokens"] == 123 and "max_tokens" not in request["json"]


def test_a_compatible_server_gets_the_base_url_and_max_tokens():
    fake = FakeLLMServer()
    fake.reply(chat_completion("x", 1, 1))
    provider(fake, base_url="http://127.0.0.1:8000/v1").complete(MESSAGES, "llama3.1", 50)
    request = fake.requests[0]
    assert request["url"] == "http://127.0.0.1:8000/v1/chat/completions"
    assert request["json"]["max_tokens"] == 50 and request["json"]["model"] == "llama3.1"


def test_a_reply_without_usage_is_marked_unreported():
    fake = FakeLLMServer()
    fake.reply(chat_completion("x", 0, 0, usage=False))
    usage = provider(fake).complete(MESSAGES, "gpt-4o-mini", 10).usage
    assert usage.reported is False and usage.total_tokens == 0


@pytest.mark.parametrize("reply, error, message", [
    (httpx2.Response(429, json={"error": {"message": "Rate limit reached", "type": "requests"}}),
     ProviderUnavailable, "OpenAI rate limit or quota reached; try again later"),
    (httpx2.Response(500, json={"error": {"message": "The server had an error"}}),
     ProviderError, "OpenAI returned HTTP 500: The server had an error"),
    (httpx2.Response(401, json={"error": {"message": "Incorrect API key provided"}}),
     ProviderError, "OpenAI returned HTTP 401: Incorrect API key provided"),
    (httpx2.ConnectError("refused"), ProviderUnavailable, "Could not connect to the OpenAI API, or the connection broke"),
    (httpx2.ReadTimeout("slow"), ProviderTimeout, "OpenAI did not answer within 5 seconds"),
])
def test_provider_failures_become_clear_gateway_errors(reply, error, message):
    fake = FakeLLMServer()
    fake.reply(reply)
    with pytest.raises(error) as raised:
        provider(fake).complete(MESSAGES, "gpt-4o-mini", 10)
    assert raised.value.message == message
