"""Each provider through its real SDK, faked at the HTTP transport with that provider's wire format."""
import httpx
import httpx2
import pytest

from backend.errors import ProviderError, ProviderTimeout, ProviderUnavailable
from backend.llm.anthropic_provider import AnthropicProvider
from backend.llm.gemini_provider import GeminiProvider
from backend.llm.ollama_provider import OllamaProvider
from backend.llm.openai_provider import OpenAIProvider
from tests.helpers import (
    FakeLLMServer,
    anthropic_message,
    anthropic_stream,
    chat_completion,
    gemini_response,
    gemini_stream,
    ollama_chat,
    ollama_stream,
    openai_stream,
)

MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Write tests"}]
TEXT = '{"testCases": [{"title": "A streamed case"}]}'


def build(name, fake):
    if name == "openai":
        return OpenAIProvider("sk-test", "gpt-4o-mini", timeout=5, transport=fake.transport)
    if name == "gemini":
        return GeminiProvider("g-key", "gemini-2.5-flash", timeout=5, transport=fake.transport)
    if name == "anthropic":
        return AnthropicProvider("a-key", "claude-haiku-4-5", timeout=5, transport=fake.transport)
    return OllamaProvider("http://127.0.0.1:11434", "llama3.2", timeout=5, transport=fake.transport)


def server(name):
    return FakeLLMServer(httpx if name == "ollama" else httpx2)


# (provider, plain reply, streamed reply, expected TokenUsage fields:
#  input, cached, cache_write, output, reasoning, complete)
CASES = [
    ("openai",
     chat_completion(TEXT, 2006, 300, cached=1920, reasoning=192),
     openai_stream(TEXT, 2006, 300, cached=1920),
     (2006, 1920, 0, 300, 192, True), (2006, 1920, 0, 300, 0, True)),
    ("gemini",
     gemini_response(TEXT, 1500, 220, cached=1024, thoughts=80),
     gemini_stream(TEXT, 1500, 220, cached=1024, thoughts=80),
     (1500, 1024, 0, 300, 80, True), (1500, 1024, 0, 300, 80, True)),
    ("anthropic",
     anthropic_message(TEXT, 25, 410, cache_read=2000, cache_write=100),
     anthropic_stream(TEXT, 25, 410, cache_read=2000, cache_write=100),
     (2125, 2000, 100, 410, 0, True), (2125, 2000, 100, 410, 0, True)),
    ("ollama",
     ollama_chat(TEXT, 26, 298),
     ollama_stream(TEXT, 26, 298),
     (26, 0, 0, 298, 0, True), (26, 0, 0, 298, 0, True)),
]


def fields(usage):
    return (usage.input_tokens, usage.cached_input_tokens, usage.cache_write_tokens, usage.output_tokens,
            usage.reasoning_tokens, usage.complete)


@pytest.mark.parametrize("name, plain, _streamed, expected, _expected_stream", CASES)
def test_plain_call_usage_follows_the_token_convention(name, plain, _streamed, expected, _expected_stream):
    fake = server(name)
    fake.reply(plain)
    completion = build(name, fake).complete(MESSAGES, build(name, fake).default_model, 500)
    assert completion.text == TEXT
    assert fields(completion.usage) == expected
    assert completion.usage.total_tokens == expected[0] + expected[3]


@pytest.mark.parametrize("name, _plain, streamed, _expected, expected", CASES)
def test_streamed_call_usage_comes_from_the_stream(name, _plain, streamed, _expected, expected):
    fake = server(name)
    fake.reply(streamed)
    provider = build(name, fake)
    stream = provider.stream(MESSAGES, provider.default_model, 500)
    assert "".join(stream) == TEXT
    assert stream.finished
    assert fields(stream.usage) == expected


def test_requests_carry_the_system_prompt_and_output_cap_in_each_wire_format():
    seen = {}
    for name, plain, *_ in CASES:
        fake = server(name)
        fake.reply(plain)
        provider = build(name, fake)
        provider.complete(MESSAGES, provider.default_model, 500)
        seen[name] = fake.requests[0]
    assert seen["openai"]["url"] == "https://api.openai.com/v1/chat/completions"
    assert seen["openai"]["json"]["messages"][0] == {"role": "system", "content": "Be brief."}
    assert seen["gemini"]["url"].endswith("/models/gemini-2.5-flash:generateContent")
    assert seen["gemini"]["json"]["systemInstruction"]["parts"] == [{"text": "Be brief."}]
    assert seen["gemini"]["json"]["generationConfig"]["maxOutputTokens"] == 500
    assert seen["anthropic"]["url"] == "https://api.anthropic.com/v1/messages"
    assert (seen["anthropic"]["json"]["system"], seen["anthropic"]["json"]["max_tokens"]) == ("Be brief.", 500)
    assert seen["anthropic"]["json"]["messages"] == [{"role": "user", "content": "Write tests"}]
    assert seen["ollama"]["url"] == "http://127.0.0.1:11434/api/chat"
    assert seen["ollama"]["json"]["options"] == {"num_predict": 500}


def test_ollama_absent_counts_are_zero_and_flagged(caplog):
    fake = server("ollama")
    fake.reply(ollama_chat(TEXT, None, 298))
    usage = build("ollama", fake).complete(MESSAGES, "llama3.2", 500).usage
    assert (usage.input_tokens, usage.output_tokens, usage.reported, usage.complete) == (0, 298, True, False)
    assert "Ollama omitted prompt_eval_count for model llama3.2; recorded as 0" in caplog.text


ERRORS = {
    "openai": {429: {"error": {"message": "Rate limit reached"}}, 500: {"error": {"message": "boom"}}},
    "gemini": {429: {"error": {"code": 429, "message": "Resource exhausted", "status": "RESOURCE_EXHAUSTED"}},
               500: {"error": {"code": 500, "message": "boom", "status": "INTERNAL"}}},
    "anthropic": {429: {"type": "error", "error": {"type": "rate_limit_error", "message": "Rate limited"}},
                  500: {"type": "error", "error": {"type": "api_error", "message": "boom"}}},
    "ollama": {429: {"error": "too many requests"}, 500: {"error": "boom"}},
}


@pytest.mark.parametrize("name", ["openai", "gemini", "anthropic", "ollama"])
def test_provider_failures_map_to_gateway_statuses(name):
    http = httpx if name == "ollama" else httpx2
    outcomes = []
    for reply in (http.Response(429, json=ERRORS[name][429]), http.Response(500, json=ERRORS[name][500]),
                  http.ReadTimeout("slow"), http.ConnectError("refused")):
        fake = server(name)
        fake.reply(reply)
        provider = build(name, fake)
        with pytest.raises((ProviderError, ProviderUnavailable, ProviderTimeout)) as raised:
            provider.complete(MESSAGES, provider.default_model, 10)
        outcomes.append(raised.value.status)
    # Ollama has no rate limits of its own: a 429 from a proxy in front of it is a plain 502.
    assert outcomes == ([502, 502, 504, 503] if name == "ollama" else [503, 502, 504, 503])


def test_anthropic_overloaded_is_503():
    fake = server("anthropic")
    fake.reply(httpx2.Response(529, json={"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}))
    with pytest.raises(ProviderUnavailable) as raised:
        build("anthropic", fake).complete(MESSAGES, "claude-haiku-4-5", 10)
    assert raised.value.message == "Anthropic is overloaded; try again later"
