"""App per test with a fresh in-memory store; fixtures for clients, users and the fake OpenAI."""
import httpx
import httpx2
import pytest

from backend import create_app
from backend.db import get_db
from tests.helpers import SETTINGS, TEST_SECRET, FakeLLMServer, bearer, create_user


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch):
    for name in SETTINGS:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def fake_openai():
    return FakeLLMServer()


@pytest.fixture
def make_app(tmp_path):
    def factory(**overrides):
        config = {"TESTING": True, "JWT_SECRET_KEY": TEST_SECRET, "LLM_PROVIDER": "demo",
                  "RATELIMIT_ENABLED": False, "BACKGROUND_TASKS": False,
                  "SPOOL_PATH": str(tmp_path / "spool.jsonl")}
        config.update(overrides)
        config.setdefault("LLM_PROVIDERS", [config["LLM_PROVIDER"]])
        return create_app(config)

    return factory


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def openai_app(make_app, fake_openai):
    return make_app(
        LLM_PROVIDER="openai", OPENAI_API_KEY="sk-test", LLM_MAX_RETRIES=0,
        LLM_TRANSPORTS={"openai": fake_openai.transport},
    )


@pytest.fixture
def fakes():
    return {name: FakeLLMServer(httpx if name == "ollama" else httpx2)
            for name in ("openai", "gemini", "anthropic", "ollama")}


@pytest.fixture
def multi_app(make_app, fakes):
    """All four real providers configured, each faked at its own transport."""
    return make_app(
        LLM_PROVIDER="openai", LLM_PROVIDERS=["openai", "gemini", "anthropic", "ollama"],
        OPENAI_API_KEY="sk-test", GEMINI_API_KEY="g-test", ANTHROPIC_API_KEY="a-test", LLM_MAX_RETRIES=0,
        LLM_TRANSPORTS={name: fake.transport for name, fake in fakes.items()},
    )


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def db(app):
    return get_db(app)


@pytest.fixture
def user_headers(app, client):
    create_user(app, "user@example.com")
    return bearer(client, "user@example.com")


@pytest.fixture
def admin_headers(app, client):
    create_user(app, "admin@example.com", role="admin")
    return bearer(client, "admin@example.com")
