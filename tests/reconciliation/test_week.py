"""A week of mixed traffic through the real generation endpoints and the OpenAI SDK, against a
fake OpenAI that bills what it serves and reports it in its organization usage report: every
final day must match.

The fake counts a request's input the way OpenAI documents it (tiktoken's o200k_base, 3 tokens
per message and 3 to prime the reply) and dates a call when it completes, as providers bill. The
week holds plain calls, cached input, cache writes (gpt-6-cyber), streams read to the end, a
stream the client drops after its first delta, a call that times out before any output, a
call that starts a few milliseconds before midnight and ends after it, and embeddings (saved
cases embedded in the background, and RAG generations whose prompt is embedded first), which
OpenAI reports on its embeddings endpoint (inputs counted with cl100k_base).
"""
import json
import time
from datetime import date, datetime, timedelta, timezone

import httpx2
import tiktoken

from backend.db import ALERTS, get_db
from backend.reconciliation import services
from backend.testcases.embeddings import embed_due
from backend.testgen.web import wait_for_drains
from tests.helpers import bearer, cases_json, chat_completion, create_user, openai_embeddings, openai_stream
from tests.reconciliation.support import OPENAI_ADMIN_KEY

FIRST_DAY = date(2026, 11, 16)
DAYS = 7
SNAPSHOTS = {"gpt-4o-mini": "gpt-4o-mini-2024-07-18", "gpt-6-cyber": "gpt-6-cyber"}
TEXT = cases_json(1)


class BillingOpenAI:
    """Chat completions that bill each call, and the organization usage report of those bills."""

    def __init__(self, clock):
        self.clock = clock
        self.bills = []  # {model, input, cached, cache_write, output, at}
        self.behaviour = "plain"
        self.encoding = None

    def _input_tokens(self, body):
        # OpenAI's documented count of chat messages (computed here, not by the code under test).
        self.encoding = self.encoding or tiktoken.get_encoding("o200k_base")
        return 3 + sum(3 + len(self.encoding.encode(m["role"])) + len(self.encoding.encode(m["content"]))
                       for m in body["messages"])

    def embeddings(self, request):
        body = json.loads(request.content)
        encoding = tiktoken.get_encoding("cl100k_base")
        tokens = sum(len(encoding.encode(text)) for text in body["input"])
        self.bills.append({"model": body["model"], "input": tokens, "cached": 0, "cache_write": 0, "output": 0,
                           "at": self.clock["now"], "kind": "embeddings"})
        vectors = [[1.0, float(len(text) % 7), 0.5] for text in body["input"]]
        return httpx2.Response(200, json=openai_embeddings(vectors, tokens, model=body["model"]))

    def chat(self, request):
        if request.url.path.endswith("/embeddings"):
            return self.embeddings(request)
        started = time.perf_counter()
        body = json.loads(request.content)
        model, prompt = body["model"], self._input_tokens(body)
        snapshot = SNAPSHOTS[model]
        cached = cache_write = 0
        if self.behaviour == "cached":
            cached = prompt // 2
        if self.behaviour == "cache_write":
            cache_write = prompt // 3
        output = 0 if self.behaviour == "timeout" else 57
        if self.behaviour == "midnight":
            time.sleep(0.02)  # a call that runs past the midnight it started just before
        billed_at = self.clock["now"] + timedelta(seconds=time.perf_counter() - started)
        self.bills.append({"model": snapshot, "input": prompt, "cached": cached, "cache_write": cache_write,
                           "output": output, "at": billed_at, "kind": "completions"})
        if self.behaviour == "timeout":
            raise httpx2.ReadTimeout("the model was still thinking", request=request)
        if body.get("stream"):
            events = openai_stream(TEXT, prompt, output, cached=cached, cache_write=cache_write, model=snapshot, pieces=3)
            return httpx2.Response(200, headers={"content-type": events.content_type}, content=events.chunks())
        return httpx2.Response(200, json=chat_completion(TEXT, prompt, output, cached=cached, cache_write=cache_write,
                                                         model=snapshot))

    def usage_report(self, request):
        start = datetime.fromtimestamp(int(request.url.params["start_time"]), timezone.utc)
        day = start.date()
        kind = request.url.path.rsplit("/", 1)[-1]
        per_model = {}
        for bill in self.bills:
            if bill["at"].date() == day and bill["kind"] == kind == "embeddings":
                row = per_model.setdefault(bill["model"], {
                    "object": "organization.usage.embeddings.result", "input_tokens": 0, "num_model_requests": 0,
                    "project_id": None, "user_id": None, "api_key_id": None, "model": bill["model"]})
                row["input_tokens"] += bill["input"]
                row["num_model_requests"] += 1
            elif bill["at"].date() == day and bill["kind"] == kind:
                row = per_model.setdefault(bill["model"], {
                    "object": "organization.usage.completions.result", "input_tokens": 0, "output_tokens": 0,
                    "input_cached_tokens": 0, "input_cache_write_tokens": 0, "input_audio_tokens": 0,
                    "output_audio_tokens": 0, "num_model_requests": 0, "project_id": None, "user_id": None,
                    "api_key_id": None, "model": bill["model"], "batch": None})
                row["input_tokens"] += bill["input"]
                row["input_cached_tokens"] += bill["cached"]
                row["input_cache_write_tokens"] += bill["cache_write"]
                row["output_tokens"] += bill["output"]
                row["num_model_requests"] += 1
        bucket = {"object": "bucket", "start_time": int(start.timestamp()),
                  "end_time": int(start.timestamp()) + 86400, "results": list(per_model.values())}
        return httpx2.Response(200, json={"object": "page", "data": [bucket], "has_more": False, "next_page": None})


def test_a_week_of_mixed_traffic_ends_with_every_final_day_matched(make_app):
    clock = {"now": datetime.combine(FIRST_DAY, datetime.min.time(), timezone.utc)}
    openai = BillingOpenAI(clock)
    app = make_app(LLM_PROVIDER="openai", LLM_PROVIDERS=["openai"], OPENAI_API_KEY="sk-test", LLM_MAX_RETRIES=0,
                   LLM_TRANSPORTS={"openai": httpx2.MockTransport(openai.chat)}, OPENAI_ADMIN_KEY=OPENAI_ADMIN_KEY,
                   RECONCILE_OPENAI_PROJECT_ID="proj_tokenledger",
                   RECONCILE_TRANSPORTS={"openai": httpx2.MockTransport(openai.usage_report)},
                   CLOCK=lambda: clock["now"])
    create_user(app, "dev@example.com")
    client = app.test_client()
    headers = bearer(client, "dev@example.com")

    def call(behaviour, at, model="gpt-4o-mini", stream=False, rag=False):
        clock["now"], openai.behaviour = at, behaviour
        response = client.post("/api/test-generation", buffered=behaviour != "abort",
                               json={"prompt": f"Checkout flow {behaviour} {at:%d %H}", "count": 1, "model": model,
                                     "stream": stream, "useRAG": rag, "ragSimilarityThreshold": 0.1}, headers=headers)
        if behaviour == "abort":
            assert next(iter(response.response)).startswith(b"event: delta")
            response.close()
            wait_for_drains(app)
        elif stream:
            assert response.get_data(as_text=True).rstrip().splitlines()[-2] == "event: done"
        else:
            assert response.status_code == (504 if behaviour == "timeout" else 200), response.get_data(as_text=True)

    for offset in range(DAYS):
        day = datetime.combine(FIRST_DAY + timedelta(days=offset), datetime.min.time(), timezone.utc)
        call("plain", day + timedelta(hours=9))
        call("cached", day + timedelta(hours=10))
        call("cache_write", day + timedelta(hours=11), model="gpt-6-cyber")
        call("stream", day + timedelta(hours=12), stream=True)
        call("abort", day + timedelta(hours=13), stream=True)
        if offset == 2:
            call("timeout", day + timedelta(hours=14))
        if offset == 4:
            call("midnight", day + timedelta(days=1) - timedelta(milliseconds=2))
        clock["now"] = day + timedelta(hours=15)
        for n in range(offset + 1):
            client.post("/api/testcases", json={"title": f"Checkout case {offset}.{n}", "steps": ["Pay"]},
                        headers=headers)
        assert embed_due(app) == offset + 1
        call("plain", day + timedelta(hours=16), rag=True)

    embedding_bills = [bill for bill in openai.bills if bill["kind"] == "embeddings"]
    assert len(embedding_bills) == DAYS * 2  # one batch of saved cases and one RAG prompt a day
    assert len(openai.bills) == DAYS * 5 + 2 + DAYS * 3
    with app.app_context():
        db = get_db(app)
        now = datetime.combine(FIRST_DAY + timedelta(days=DAYS), datetime.min.time(), timezone.utc) + timedelta(hours=9)
        results = [result for offset in range(DAYS) for result in services.reconcile_day(
            db, app.config, FIRST_DAY + timedelta(days=offset), now) if result["provider"] == "openai"]
        alerts = db[ALERTS].count_documents({})
    assert [(r["date"], r["verdict"], r["final"]) for r in results] == [
        ((FIRST_DAY + timedelta(days=offset)).isoformat(), "match", True) for offset in range(DAYS)]
    assert alerts == 0
    moved = [r["midnight"] for r in results if r["midnight"]]
    assert [m["datedBy"] for m in moved] == ["completion", "completion"]  # out of the 5th day, into the 6th
    assert results[2]["ledger"]["estimatedRequests"] == 1  # the timeout, under the alias, matched to the snapshot
    assert sum(r["ledger"]["cacheWriteTokens"] for r in results) > 0
    embedded = [row for r in results for row in r["models"] if row["model"] == "text-embedding-3-small"]
    assert [row["verdict"] for row in embedded] == ["match"] * DAYS
    assert sum(row["ledger"]["uncachedInputTokens"] for row in embedded) == sum(b["input"] for b in embedding_bills)
