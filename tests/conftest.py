"""App per test with a fresh in-memory store (or a fresh MongoDB database with TEST_MONGO_URI);
fixtures for clients, users and the fake OpenAI."""
import os
import uuid

import httpx
import httpx2
import pymongo
import pytest

from backend import create_app
from backend.db import get_db
from tests.helpers import SETTINGS, TEST_SECRET, FakeLLMServer, bearer, create_user

# Read once at import: _clean_environment removes only the service's own settings.
TEST_MONGO_URI = os.environ.get("TEST_MONGO_URI")
TEST_DB_PREFIX = "tokenledger_test"
RUN_ID = uuid.uuid4().hex[:8]


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch):
    for name in SETTINGS:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def fake_openai():
    return FakeLLMServer()


@pytest.fixture(scope="session")
def test_mongo():
    """With TEST_MONGO_URI set, the suite runs on that MongoDB server instead of the embedded
    store: each app gets a fresh database named tokenledger_test_<run>_..., dropped after its
    test, and whatever a crashed test left of this run is dropped at the end."""
    if not TEST_MONGO_URI:
        yield None
        return
    client = pymongo.MongoClient(TEST_MONGO_URI, serverSelectionTimeoutMS=5000, tz_aware=True)
    client.admin.command("ping")  # an unreachable server fails the run at once, not test by test
    yield client
    for name in client.list_database_names():
        if name.startswith(f"{TEST_DB_PREFIX}_{RUN_ID}_"):
            client.drop_database(name)
    client.close()


@pytest.fixture
def make_app(tmp_path, test_mongo):
    databases = []

    def factory(**overrides):
        config = {"TESTING": True, "JWT_SECRET_KEY": TEST_SECRET, "LLM_PROVIDER": "demo",
                  "RATELIMIT_ENABLED": False, "BACKGROUND_TASKS": False,
                  # Records reach the ledger before the response, so tests read it at once
                  # (tests/usage/test_writer.py covers the asynchronous writer).
                  "LEDGER_WRITES": "sync",
                  "SPOOL_PATH": str(tmp_path / "spool.jsonl")}
        if test_mongo is not None:
            # A new database per app, like a new embedded store per app; an app given another's
            # client (MONGO_CLIENT) shares that app's database, as it shares its store when embedded.
            if "MONGO_CLIENT" not in overrides or not databases:
                databases.append(f"{TEST_DB_PREFIX}_{RUN_ID}_{uuid.uuid4().hex[:12]}")
            config.update(MONGO_URI=TEST_MONGO_URI, MONGO_DB_NAME=databases[-1])
        config.update(overrides)
        config.setdefault("LLM_PROVIDERS", [config["LLM_PROVIDER"]])
        return create_app(config)

    yield factory
    for name in databases:
        test_mongo.drop_database(name)


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
