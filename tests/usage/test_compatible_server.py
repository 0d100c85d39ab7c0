"""Acceptance: providers pointed by base URL / host at a real HTTP server on loopback.

No transport is injected: each real SDK talks HTTP to a server in this process that
speaks OpenAI's, Gemini's, Anthropic's and Ollama's wire formats, plain and streamed.
The ledger must hold, call for call, the usage that server reported.
"""
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from backend.db import USAGE, get_db
from tests.helpers import (
    anthropic_message,
    anthropic_stream,
    bearer,
    cases_json,
    chat_completion,
    create_user,
    gemini_response,
    gemini_stream,
    ollama_chat,
    ollama_stream,
    openai_stream,
)

TEXT = cases_json(1)


def reply_for(path, body, usage):
    """(content type, bytes) in the wire format the request path belongs to."""
    streamed = bool(body.get("stream")) or ":streamGenerateContent" in path
    prompt, output, cached = usage
    if path.endswith("/chat/completions"):
        made = openai_stream(TEXT, prompt, output, cached) if streamed else chat_completion(TEXT, prompt, output, cached)
    elif ":generateContent" in path or ":streamGenerateContent" in path:
        made = gemini_stream(TEXT, prompt, output, cached) if streamed else gemini_response(TEXT, prompt, output, cached)
    elif path.endswith("/messages"):
        uncached = prompt - cached
        made = (anthropic_stream(TEXT, uncached, output, cache_read=cached) if streamed
                else anthropic_message(TEXT, uncached, output, cache_read=cached))
    elif path == "/api/chat":
        made = ollama_stream(TEXT, prompt, output) if streamed else ollama_chat(TEXT, prompt, output)
    else:
        raise AssertionError(f"unexpected path {path}")
    if isinstance(made, dict):
        return "application/json", json.dumps(made).encode()
    return made.content_type, b"".join(made.chunks())


@pytest.fixture
def llm_server():
    reported = []
    seen = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append(self.path)
            content_type, payload = reply_for(self.path, body, reported.pop(0))
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}", reported, seen
    server.shutdown()


CALLS = [("openai", (812, 240, 128)), ("gemini", (1530, 410, 1024)),
         ("anthropic", (2600, 95, 2048)), ("ollama", (95, 33, 0))]


def test_ledger_equals_what_the_server_reported_for_every_provider(make_app, llm_server):
    base, reported, seen = llm_server
    app = make_app(
        LLM_PROVIDER="openai", LLM_PROVIDERS=["openai", "gemini", "anthropic", "ollama"], LLM_MAX_RETRIES=0,
        OPENAI_API_KEY="sk-local", OPENAI_BASE_URL=f"{base}/v1", GEMINI_API_KEY="g-local", GEMINI_BASE_URL=base,
        ANTHROPIC_API_KEY="a-local", ANTHROPIC_BASE_URL=base, OLLAMA_HOST=base,
    )
    client = app.test_client()
    create_user(app, "dev@example.com")
    headers = bearer(client, "dev@example.com")
    expected = []
    for stream in (False, True):
        for provider, usage in CALLS:
            reported.append(usage)
            expected.append((provider, usage))
            response = client.post("/api/test-generation", headers=headers,
                                   json={"prompt": "x", "count": 1, "provider": provider, "stream": stream})
            assert response.status_code == 200
            assert "event: done" in response.get_data(as_text=True) if stream else response.json["success"]

    assert len(seen) == 8
    with app.app_context():
        records = list(get_db()[USAGE].find().sort([("timestamp", 1), ("_id", 1)]))
    assert [(r["provider"], (r["promptTokens"], r["completionTokens"], r["cachedInputTokens"])) for r in records] == [
        (provider, (prompt, output, cached)) for provider, (prompt, output, cached) in expected]
