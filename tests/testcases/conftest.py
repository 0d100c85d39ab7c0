"""The embedding tests' app: OpenAI faked at its transport, a clock they move, and a signed-in user."""
import pytest

from tests.helpers import Clock, bearer, create_user, utc


@pytest.fixture
def clock():
    return Clock(utc(2026, 12, 1, 9))


@pytest.fixture
def rag_app(make_app, fake_openai, clock):
    return make_app(LLM_PROVIDER="openai", OPENAI_API_KEY="sk-test", LLM_MAX_RETRIES=0,
                    LLM_TRANSPORTS={"openai": fake_openai.transport}, CLOCK=clock)


@pytest.fixture
def dev(rag_app):
    client = rag_app.test_client()
    user = create_user(rag_app, "dev@example.com")
    return client, bearer(client, "dev@example.com"), user
