"""Acceptance: OPENAI_BASE_URL at a real OpenAI-compatible HTTP server on loopback.

No transport is injected here: the real SDK talks HTTP to a server in this process,
and the ledger must hold, call for call, the usage that server reported.
"""
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from backend.db import USAGE, get_db
from tests.helpers import bearer, cases_json, chat_completion, create_user

REPORTED = [(812, 240, 0), (1530, 410, 1024), (95, 33, 0)]


@pytest.fixture
def compatible_server():
    replies = [chat_completion(cases_json(1), p, c, cached=k, model="gpt-4o-mini") for p, c, k in REPORTED]
    seen = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append((self.path, self.headers.get("Authorization"), body))
            payload = json.dumps(replies[len(seen) - 1]).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/v1", seen
    server.shutdown()


def test_ledger_equals_what_the_server_reported(make_app, compatible_server):
    base_url, seen = compatible_server
    app = make_app(LLM_PROVIDER="openai", OPENAI_API_KEY="sk-local", OPENAI_BASE_URL=base_url, LLM_MAX_RETRIES=0)
    client = app.test_client()
    create_user(app, "dev@example.com")
    headers = bearer(client, "dev@example.com")
    for _ in REPORTED:
        assert client.post("/api/test-generation", json={"prompt": "x", "count": 1}, headers=headers).status_code == 200

    assert [(path, auth) for path, auth, _ in seen] == [("/v1/chat/completions", "Bearer sk-local")] * 3
    with app.app_context():
        records = list(get_db()[USAGE].find().sort("timestamp", 1))
    assert [(r["promptTokens"], r["completionTokens"], r["cachedInputTokens"]) for r in records] == REPORTED
    expected = [round(((p - k) * 0.15 + k * 0.075 + c * 0.60) / 1_000_000, 10) for p, c, k in REPORTED]
    assert [r["cost"] for r in records] == expected
