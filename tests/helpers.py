"""Test helpers: users and tokens, ledger documents, and a fake OpenAI at the HTTP transport."""
import json
from datetime import datetime, timezone

import httpx2
from bson import ObjectId

from backend.auth.services import register_user
from backend.db import USAGE, get_db

SETTINGS = (
    "HOST", "PORT", "MONGO_URI", "MONGO_DB_NAME", "MONGO_TIMEOUT_MS", "AUTO_CREATE_INDEXES",
    "JWT_SECRET_KEY", "JWT_ACCESS_TOKEN_MINUTES", "JWT_REFRESH_TOKEN_DAYS", "ADMIN_EMAIL",
    "ADMIN_PASSWORD", "ALLOW_REGISTRATION", "CORS_ORIGINS", "LOG_LEVEL", "LLM_PROVIDER",
    "LLM_MODEL", "LLM_TIMEOUT_SECONDS", "LLM_MAX_RETRIES", "LLM_MAX_OUTPUT_TOKENS",
    "OPENAI_API_KEY", "OPENAI_BASE_URL", "LLM_PROVIDERS", "OPENAI_MODEL", "GEMINI_MODEL", "ANTHROPIC_MODEL",
    "OLLAMA_MODEL", "GEMINI_API_KEY", "GOOGLE_API_KEY", "GEMINI_BASE_URL", "ANTHROPIC_API_KEY",
    "ANTHROPIC_BASE_URL", "OLLAMA_HOST", "OLLAMA_API_KEY", "PRICING_FILE",
)
PASSWORD = "correct-horse-battery"
TEST_SECRET = "test-secret-key-that-is-long-enough-for-hs256"


class FakeOpenAI:
    """An OpenAI-compatible server at the transport: queued replies, recorded requests."""

    def __init__(self):
        self.replies = []
        self.requests = []

    def reply(self, response):
        """Queue an httpx2.Response, a JSON dict (200), or an exception to raise."""
        self.replies.append(response)

    def handler(self, request):
        self.requests.append({"url": str(request.url), "json": json.loads(request.content)})
        reply = self.replies.pop(0)
        if isinstance(reply, Exception):
            raise reply
        if isinstance(reply, dict):
            return httpx2.Response(200, json=reply)
        return reply

    @property
    def transport(self):
        return httpx2.MockTransport(self.handler)


def chat_completion(content, prompt_tokens, completion_tokens, cached=0, reasoning=0,
                    model="gpt-4o-mini-2024-07-18", usage=True):
    """A chat.completion body exactly as OpenAI's API returns it."""
    body = {
        "id": "chatcmpl-AbC123",
        "object": "chat.completion",
        "created": 1732200000,
        "model": model,
        "system_fingerprint": "fp_0ba0d124f1",
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": content, "refusal": None},
            "logprobs": None,
            "finish_reason": "stop",
        }],
    }
    if usage:
        body["usage"] = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": reasoning, "audio_tokens": 0,
                "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0,
            },
        }
    return body


def cases_json(count, prefix="Case"):
    return json.dumps({"testCases": [
        {"title": f"{prefix} {i}", "description": "d", "preconditions": ["p"], "steps": ["s1", "s2"],
         "expectedResult": "ok", "priority": "high", "type": "functional"}
        for i in range(1, count + 1)
    ]})


def create_user(app, email, role="user", password=PASSWORD):
    with app.app_context():
        return register_user(get_db(), email, password, name=email.split("@")[0], role=role)


def bearer(client, email, password=PASSWORD):
    response = client.post("/auth/login", json={"email": email, "password": password})
    assert response.status_code == 200, response.json
    return {"Authorization": f"Bearer {response.json['data']['accessToken']}"}


def usage_record(user, at, prompt=100, completion=50, cost=0.0001, model="gpt-4o-mini",
                 provider="openai", operation="test_generation", active=True, cached=0, reasoning=0):
    """A ledger document as the recorder writes it, with a chosen timestamp."""
    at = at.astimezone(timezone.utc)
    return {
        "_id": ObjectId(),
        "userId": user["_id"],
        "userEmail": user["email"],
        "provider": provider,
        "modelName": model,
        "responseModel": model,
        "promptTokens": prompt,
        "completionTokens": completion,
        "cachedInputTokens": cached,
        "reasoningTokens": reasoning,
        "totalTokens": prompt + completion,
        "cost": cost,
        "priced": True,
        "price": {"inputPer1M": 0.15, "cachedInputPer1M": 0.075, "outputPer1M": 0.6, "source": "test"},
        "demo": False,
        "operation": operation,
        "timestamp": at,
        "date": at.strftime("%Y-%m-%d"),
        "month": at.strftime("%Y-%m"),
        "year": at.year,
        "isActive": active,
        "callId": ObjectId().binary.hex(),
        "requestId": "test",
        "latencyMs": 1.0,
    }


def insert_records(app, records):
    with app.app_context():
        get_db()[USAGE].insert_many([dict(r) for r in records])


def utc(*args):
    return datetime(*args, tzinfo=timezone.utc)
