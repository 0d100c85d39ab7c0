"""50 concurrent generations at a budget that allows exactly 7 of them."""
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx2
import mongomock
import pytest
import tiktoken

from backend.db import USAGE, USAGE_DAILY, get_db
from backend.testgen.prompts import build_messages
from tests.helpers import TEST_SECRET, bearer, cases_json, chat_completion, create_user

MAX_OUTPUT = 200
PROMPT = "Checkout with a saved card"


def worst_case_tokens():
    """What each request reserves: its prompt counted as OpenAI does, plus the output cap."""
    enc = tiktoken.get_encoding("o200k_base")
    messages = build_messages(PROMPT, 1)
    return 3 + sum(3 + len(enc.encode(m["role"])) + len(enc.encode(m["content"])) for m in messages) + MAX_OUTPUT


def provider_reporting(prompt_tokens):
    """A fake OpenAI that always reports the reserved worst case, so settling refunds nothing."""
    lock = threading.Lock()
    calls = []

    def handler(request):
        with lock:
            calls.append(1)
        return httpx2.Response(200, json=chat_completion(cases_json(1), prompt_tokens, MAX_OUTPUT))

    return httpx2.MockTransport(handler), calls


def build(make_app, transport, client=None):
    return make_app(LLM_PROVIDER="openai", OPENAI_API_KEY="sk-test", LLM_MAX_RETRIES=0,
                    LLM_MAX_OUTPUT_TOKENS=MAX_OUTPUT, LLM_TRANSPORTS={"openai": transport},
                    JWT_SECRET_KEY=TEST_SECRET, **({"MONGO_CLIENT": client} if client else {}))


@pytest.mark.parametrize("instances", [1, 2], ids=["one instance", "two instances, one store"])
def test_exactly_seven_of_fifty_concurrent_requests_fit(make_app, instances):
    per_request = worst_case_tokens()
    transport, provider_calls = provider_reporting(per_request - MAX_OUTPUT)
    store = mongomock.MongoClient(tz_aware=True)
    apps = [build(make_app, transport, store) for _ in range(instances)]
    admin_app = apps[0]
    user = create_user(admin_app, "dev@example.com")
    create_user(admin_app, "root@example.com", role="admin")
    client = admin_app.test_client()
    admin = bearer(client, "root@example.com")
    # Room for 7 worst cases, one token short of 8.
    limit = 8 * per_request - 1
    assert client.put(f"/admin/openai/budgets/{user['_id']}", json={"tokensPerDay": limit},
                      headers=admin).status_code == 200
    headers = bearer(client, "dev@example.com")

    def generate(number):
        app = apps[number % instances]
        return app.test_client().post("/api/test-generation", json={"prompt": PROMPT, "count": 1}, headers=headers)

    # Switch threads every microsecond so any read-then-write window is actually raced.
    switch_interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        with ThreadPoolExecutor(max_workers=16) as pool:
            responses = list(pool.map(generate, range(50)))
    finally:
        sys.setswitchinterval(switch_interval)

    statuses = sorted(r.status_code for r in responses)
    assert statuses.count(200) == 7 and statuses.count(429) == 43
    assert len(provider_calls) == 7
    refused = next(r for r in responses if r.status_code == 429)
    assert refused.json["data"]["window"] == "day" and refused.json["data"]["limit"] == limit
    with admin_app.app_context():
        db = get_db()
        assert db[USAGE].count_documents({}) == 7
        assert sum(doc["requests"] for doc in db[USAGE_DAILY].find()) == 7
        assert sum(doc["totalTokens"] for doc in db[USAGE_DAILY].find()) == 7 * per_request
    usage = client.get("/api/me/usage", headers=headers).json["data"]["windows"][0]
    assert usage["used"]["tokens"] == 7 * per_request and usage["remaining"]["tokens"] == limit - 7 * per_request
