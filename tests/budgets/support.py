"""Shared by the budget and alert tests: an OpenAI fake whose calls use exactly their reserved worst case."""
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx2
import tiktoken

from backend.testgen.prompts import build_messages
from tests.helpers import TEST_SECRET, cases_json, chat_completion

MAX_OUTPUT = 200
PROMPT = "Checkout with a saved card"


def prompt_tokens(prompt=PROMPT, count=1):
    """The prompt of a generation request counted as OpenAI counts chat messages (o200k_base)."""
    enc = tiktoken.get_encoding("o200k_base")
    messages = build_messages(prompt, count)
    return 3 + sum(3 + len(enc.encode(m["role"])) + len(enc.encode(m["content"])) for m in messages)


def worst_case_tokens():
    """What each request reserves: its prompt plus the output cap."""
    return prompt_tokens() + MAX_OUTPUT


def provider_reporting(prompt, completion=MAX_OUTPUT):
    """A fake OpenAI reporting the given usage on every call; returns (transport, list of calls)."""
    lock = threading.Lock()
    calls = []

    def handler(request):
        with lock:
            calls.append(1)
        return httpx2.Response(200, json=chat_completion(cases_json(1), prompt, completion))

    return httpx2.MockTransport(handler), calls


def build(make_app, transport, client=None, **overrides):
    return make_app(LLM_PROVIDER="openai", OPENAI_API_KEY="sk-test", LLM_MAX_RETRIES=0,
                    LLM_MAX_OUTPUT_TOKENS=MAX_OUTPUT, LLM_TRANSPORTS={"openai": transport},
                    JWT_SECRET_KEY=TEST_SECRET, **({"MONGO_CLIENT": client} if client else {}), **overrides)


def generate(client, headers, prompt=PROMPT):
    return client.post("/api/test-generation", json={"prompt": prompt, "count": 1}, headers=headers)


def raced(one_request, count, threads=16):
    """[one_request(n) for n in range(count)] on `threads` threads switching every microsecond, so
    any read-then-write window is actually raced."""
    switch_interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            return list(pool.map(one_request, range(count)))
    finally:
        sys.setswitchinterval(switch_interval)


def with_platform_admin(make_app):
    """An app whose fake OpenAI reports one worst case per call, with a platform admin signed in:
    (app, client, the admin's headers, the provider's calls, tokens per request)."""
    from tests.helpers import bearer, create_user

    per_request = worst_case_tokens()
    transport, calls = provider_reporting(per_request - MAX_OUTPUT)
    app = build(make_app, transport)
    client = app.test_client()
    create_user(app, "root@example.com", role="admin")
    return app, client, bearer(client, "root@example.com"), calls, per_request
