"""Test helpers: users and tokens, ledger documents, and a fake OpenAI at the HTTP transport."""
import base64
import json
import re
import struct
from datetime import datetime, timezone
from pathlib import Path

import httpx2
from bson import ObjectId

from backend.auth.services import register_user
from backend.clock import utc_now
from backend.db import get_db
from backend.llm.specs import PROVIDERS
from backend.runtime import runtime

ROOT = Path(__file__).resolve().parents[1]

# Every setting backend/config.py reads, its own and those the provider declarations name (so a
# test never sees the developer's environment), and the ollama SDK's own key.
SETTINGS = tuple(sorted(set(re.findall(r'env, "([A-Z0-9_]+)"', (ROOT / "backend" / "config.py").read_text()))
                        | {name for spec in PROVIDERS.values() for name in spec.variables} | {"OLLAMA_API_KEY"}))
PASSWORD = "correct-horse-battery"
TEST_SECRET = "test-secret-key-that-is-long-enough-for-hs256"


class FakeLLMServer:
    """An LLM API at the HTTP transport: queued replies, recorded requests.

    `http` is the HTTP library the SDK uses: httpx2 (openai, google-genai, anthropic)
    or httpx (ollama). A reply is a Response, a JSON dict (200), an SSE/NDJSON body
    from the builders below, or an exception to raise.
    """

    def __init__(self, http=httpx2):
        self.http = http
        self.replies = []
        self.requests = []

    def reply(self, response):
        self.replies.append(response)

    def handler(self, request):
        self.requests.append({"url": str(request.url), "json": json.loads(request.content or b"null")})
        reply = self.replies.pop(0)
        if isinstance(reply, Exception):
            raise reply
        if isinstance(reply, dict):
            return self.http.Response(200, json=reply)
        if isinstance(reply, Body):
            return self.http.Response(200, headers={"content-type": reply.content_type}, content=reply.chunks())
        return reply

    @property
    def transport(self):
        return self.http.MockTransport(self.handler)


class Body:
    """A streamed body; `break_with` raises mid-stream after the given parts, like a dropped connection."""

    def __init__(self, parts, content_type, break_with=None):
        self.parts, self.content_type, self.break_with = parts, content_type, break_with

    def chunks(self):
        for part in self.parts:
            yield part.encode()
        if self.break_with is not None:
            raise self.break_with


def sse(events, break_with=None):
    """events: [(event name or None, payload dict or literal string)]."""
    parts = []
    for name, payload in events:
        data = payload if isinstance(payload, str) else json.dumps(payload)
        parts.append((f"event: {name}\n" if name else "") + f"data: {data}\n\n")
    return Body(parts, "text/event-stream", break_with)


def ndjson(lines, break_with=None):
    return Body([json.dumps(line) + "\n" for line in lines], "application/x-ndjson", break_with)


def chat_completion(content, prompt_tokens, completion_tokens, cached=0, reasoning=0,
                    model="gpt-4o-mini-2024-07-18", usage=True, cache_write=None):
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
            "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0,
                                      **({"cache_write_tokens": cache_write} if cache_write is not None else {})},
            "completion_tokens_details": {
                "reasoning_tokens": reasoning, "audio_tokens": 0,
                "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0,
            },
        }
    return body


def openai_stream(content, prompt_tokens, completion_tokens, cached=0, pieces=3, model="gpt-4o-mini-2024-07-18",
                  usage=True, break_with=None, break_after=None, cache_write=None):
    """chat.completion.chunk events as OpenAI streams them with stream_options.include_usage."""
    base = {"id": "chatcmpl-AbC123", "object": "chat.completion.chunk", "created": 1732200000, "model": model,
            "system_fingerprint": "fp_0ba0d124f1"}
    size = -(-len(content) // pieces)
    texts = [content[i:i + size] for i in range(0, len(content), size)]
    events = [(None, {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                          "finish_reason": None}], "usage": None})]
    events += [(None, {**base, "choices": [{"index": 0, "delta": {"content": t}, "finish_reason": None}],
                       "usage": None}) for t in texts]
    events.append((None, {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}], "usage": None}))
    if usage:
        events.append((None, {**base, "choices": [], "usage": chat_completion("", prompt_tokens, completion_tokens,
                                                                              cached=cached, cache_write=cache_write)["usage"]}))
    events.append((None, "[DONE]"))
    if break_after is not None:
        events = events[:break_after]
    return sse(events, break_with)


def gemini_response(content, prompt, candidates, cached=0, thoughts=0, model="gemini-2.0-flash-001"):
    """A generateContent body as the Gemini API returns it."""
    usage = {"promptTokenCount": prompt, "candidatesTokenCount": candidates,
             "totalTokenCount": prompt + candidates + thoughts,
             "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt}]}
    if cached:
        usage["cachedContentTokenCount"] = cached
    if thoughts:
        usage["thoughtsTokenCount"] = thoughts
    return {"candidates": [{"content": {"parts": [{"text": content}], "role": "model"}, "finishReason": "STOP",
                            "index": 0}],
            "usageMetadata": usage, "modelVersion": model, "responseId": "mLRlZ4iEKpGl1MkPvfjQ8Ac"}


def gemini_stream(content, prompt, candidates, cached=0, thoughts=0, pieces=3, break_with=None, break_after=None):
    """streamGenerateContent?alt=sse: every chunk carries usage so far; the last is final."""
    size = -(-len(content) // pieces)
    texts = [content[i:i + size] for i in range(0, len(content), size)]
    events = []
    for number, text in enumerate(texts, 1):
        chunk = gemini_response(text, prompt, candidates if number == len(texts) else number,
                                cached, thoughts if number == len(texts) else 0)
        if number < len(texts):
            del chunk["candidates"][0]["finishReason"]
        events.append((None, chunk))
    if break_after is not None:
        events = events[:break_after]
    return sse(events, break_with)


def anthropic_message(content, input_tokens, output_tokens, cache_read=0, cache_write=0,
                      model="claude-3-5-haiku-20241022"):
    """A Messages API body as Anthropic returns it (input_tokens exclude cache reads and writes)."""
    return {"id": "msg_01XFDUDYJgAACzvnptvVoYEL", "type": "message", "role": "assistant", "model": model,
            "content": [{"type": "text", "text": content}], "stop_reason": "end_turn", "stop_sequence": None,
            "usage": {"input_tokens": input_tokens, "cache_creation_input_tokens": cache_write,
                      "cache_read_input_tokens": cache_read, "output_tokens": output_tokens}}


def anthropic_stream(content, input_tokens, output_tokens, cache_read=0, cache_write=0, pieces=3,
                     break_with=None, break_after=None):
    """Messages streaming events: message_start (input usage), text deltas, message_delta (output usage)."""
    start = anthropic_message("", input_tokens, 1, cache_read, cache_write)
    start.update(content=[], stop_reason=None)
    size = -(-len(content) // pieces)
    texts = [content[i:i + size] for i in range(0, len(content), size)]
    events = [("message_start", {"type": "message_start", "message": start}),
              ("content_block_start", {"type": "content_block_start", "index": 0,
                                       "content_block": {"type": "text", "text": ""}}),
              ("ping", {"type": "ping"})]
    events += [("content_block_delta", {"type": "content_block_delta", "index": 0,
                                        "delta": {"type": "text_delta", "text": t}}) for t in texts]
    events += [("content_block_stop", {"type": "content_block_stop", "index": 0}),
               ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                                  "usage": {"output_tokens": output_tokens}}),
               ("message_stop", {"type": "message_stop"})]
    if break_after is not None:
        events = events[:break_after]
    return sse(events, break_with)


def ollama_chat(content, prompt_eval_count, eval_count, model="llama3.2"):
    """An /api/chat body as Ollama returns it; a None count is omitted, as Ollama does."""
    body = {"model": model, "created_at": "2024-12-01T10:00:00.000000Z",
            "message": {"role": "assistant", "content": content}, "done_reason": "stop", "done": True,
            "total_duration": 4883583458, "load_duration": 1334875, "prompt_eval_duration": 342546000,
            "eval_duration": 4535599000}
    if prompt_eval_count is not None:
        body["prompt_eval_count"] = prompt_eval_count
    if eval_count is not None:
        body["eval_count"] = eval_count
    return body


def ollama_stream(content, prompt_eval_count, eval_count, pieces=3, break_with=None, break_after=None):
    size = -(-len(content) // pieces)
    texts = [content[i:i + size] for i in range(0, len(content), size)]
    lines = [{"model": "llama3.2", "created_at": "2024-12-01T10:00:00.000000Z",
              "message": {"role": "assistant", "content": t}, "done": False} for t in texts]
    lines.append(ollama_chat("", prompt_eval_count, eval_count))
    if break_after is not None:
        lines = lines[:break_after]
    return ndjson(lines, break_with)


def openai_embeddings(vectors, prompt_tokens, model="text-embedding-3-small"):
    """An /v1/embeddings body as OpenAI returns it to the SDK, which asks for base64: each vector
    is its little-endian float32 bytes, base64-encoded."""
    data = [{"object": "embedding", "index": index,
             "embedding": base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()}
            for index, vector in enumerate(vectors)]
    return {"object": "list", "data": data, "model": model,
            "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens}}


def gemini_embeddings(vectors):
    """A batchEmbedContents body as the Gemini API returns it: vectors only, no token count."""
    return {"embeddings": [{"values": list(vector)} for vector in vectors]}


def ollama_embeddings(vectors, prompt_eval_count, model="nomic-embed-text"):
    """An /api/embed body as Ollama returns it."""
    return {"model": model, "embeddings": [list(vector) for vector in vectors], "total_duration": 14143917,
            "load_duration": 1019500, "prompt_eval_count": prompt_eval_count}


def cases_json(count, prefix="Case"):
    return json.dumps({"testCases": [
        {"title": f"{prefix} {i}", "description": "d", "preconditions": ["p"], "steps": ["s1", "s2"],
         "expectedResult": "ok", "priority": "high", "type": "functional"}
        for i in range(1, count + 1)
    ]})


def read_events(response):
    """Parse a server-sent-events body into [(event, data dict)]."""
    events = []
    for block in response.get_data(as_text=True).strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((lines["event"], json.loads(lines["data"])))
    return events


def create_user(app, email, role="user", password=PASSWORD):
    with app.app_context():
        return register_user(get_db(), email, password, name=email.split("@")[0], role=role, now=utc_now())


def bearer(client, email, password=PASSWORD):
    response = client.post("/auth/login", json={"email": email, "password": password})
    assert response.status_code == 200, response.json
    return {"Authorization": f"Bearer {response.json['data']['accessToken']}"}


def usage_record(user, at, prompt=100, completion=50, cost=0.0001, model="gpt-4o-mini",
                 provider="openai", operation="test_generation", active=True, cached=0, reasoning=0, outcome="ok",
                 org_id=None, team_id=None):
    """A ledger document as the recorder writes it, with a chosen timestamp (and, when given,
    organization and team; else the writer puts it in the default organization)."""
    at = at.astimezone(timezone.utc)
    membership = {"orgId": ObjectId(org_id), "teamId": ObjectId(team_id) if team_id else None} if org_id else {}
    return {
        "_id": ObjectId(),
        "userId": user["_id"],
        "userEmail": user["email"],
        **membership,
        "provider": provider,
        "modelName": model,
        "responseModel": model,
        "promptTokens": prompt,
        "completionTokens": completion,
        "cachedInputTokens": cached,
        "cacheWriteTokens": 0,
        "reasoningTokens": reasoning,
        "usageReported": True,
        "estimated": False,
        "totalTokens": prompt + completion,
        "cost": cost,
        "priced": True,
        "price": {"inputPer1M": 0.15, "cachedInputPer1M": 0.075, "outputPer1M": 0.6, "source": "test"},
        "demo": False,
        "operation": operation,
        "outcome": outcome,
        "httpStatus": 200 if outcome == "ok" else 502,
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
    """Write records through the service's own write path: the ledger, then the rollups."""
    runtime(app).writer.write(records)


def without_projection(data):
    """An analytics answer without the dashboard's month-end projection (it is of now: it moves
    with the clock between two calls)."""
    return {k: v for k, v in data.items() if k != "projection"} if isinstance(data, dict) else data


class Clock:
    """An app's CLOCK a test moves by hand: `clock.at += timedelta(...)`."""

    def __init__(self, at):
        self.at = at

    def __call__(self):
        return self.at


def utc(*args):
    return datetime(*args, tzinfo=timezone.utc)


def left_by_a_gone_process(spool_path, *entries, process="4242-deadbeef", raw=b""):
    """The spool files a process that ended leaves: its lock (which nobody holds any more) and one
    segment of `entries`, each ("r", record), ("i", intent) or ("x", [callIds]), then `raw` bytes
    (a line torn by the kill)."""
    from backend.usage.spool import RESOLVED, encode

    Path(f"{spool_path}.{process}.lock").touch()
    lines = [encode({"k": kind, "ids": body} if kind == RESOLVED else {"k": kind, "d": body}) for kind, body in entries]
    Path(f"{spool_path}.{process}.000001.wal").write_bytes(b"".join(lines) + raw)
