"""Benchmark the admin analytics on the rollup path and on the raw-ledger path.

Usage: python scripts/bench_analytics.py --records N [--repeats K] [--skip-raw] [--seed S] [--db NAME]

Loads N synthetic ledger records (about 1,000 users with a skewed spread, five
models, three operations, 90 days) into the configured store (MONGO_URI, or the
embedded store), builds the rollups with the same rebuild the ops script uses, then
prints the median latency of each admin endpoint, called through the app with an
admin token, with source=rollup and source=raw. The database named by --db
(default tokenledger_bench) is dropped first: never point it at real data.
"""
import argparse
import random
import statistics
import sys
import time
import uuid
from datetime import datetime, time as clock_time, timedelta, timezone

from _bootstrap import script_app
from bson import ObjectId

from backend.auth.services import ensure_admin
from backend.db import USAGE, USERS, get_db
from backend.indexes import ensure_indexes
from backend.usage import rollups

MODELS = [("openai", "gpt-4o-mini", 0.15, 0.60, 40), ("openai", "gpt-4.1", 2.0, 8.0, 15),
          ("gemini", "gemini-2.5-flash", 0.30, 2.50, 20), ("anthropic", "claude-haiku-4-5", 1.0, 5.0, 20),
          ("ollama", "llama3.2", 0.0, 0.0, 5)]
OPERATIONS = [("test_generation", 60), ("testcase_generation", 25), ("testcase_generation_saved", 15)]
USER_COUNT = 1000
DAYS = 90
BATCH = 20_000
WINDOW_DAYS = 30


def synthetic_records(count, rng, users, today):
    """Heavy users make most calls (weights ~ 1/rank), as in real usage."""
    user_weights = [1 / rank for rank in range(1, len(users) + 1)]
    model_weights = [m[4] for m in MODELS]
    operation_weights = [o[1] for o in OPERATIONS]
    first_day = datetime.combine(today - timedelta(days=DAYS), clock_time(), tzinfo=timezone.utc)
    for _ in range(count):
        user = rng.choices(users, user_weights)[0]
        provider, model, input_rate, output_rate, _ = rng.choices(MODELS, model_weights)[0]
        at = first_day + timedelta(seconds=rng.randrange(DAYS * 86400))
        at = at.replace(microsecond=0)
        prompt, completion = rng.randint(200, 6000), rng.randint(50, 2500)
        cached = rng.choice((0, 0, prompt // 2))
        cost = round((prompt - cached) * input_rate / 1e6 + cached * input_rate / 2e6 + completion * output_rate / 1e6, 10)
        yield {
            "userId": user["_id"], "userEmail": user["email"], "provider": provider, "modelName": model,
            "responseModel": model, "promptTokens": prompt, "completionTokens": completion,
            "cachedInputTokens": cached, "cacheWriteTokens": 0, "reasoningTokens": 0,
            "totalTokens": prompt + completion, "cost": cost, "priced": provider != "ollama",
            "usageReported": True, "demo": False, "operation": rng.choices(OPERATIONS, operation_weights)[0][0],
            "timestamp": at, "date": at.strftime("%Y-%m-%d"), "month": at.strftime("%Y-%m"), "year": at.year,
            "isActive": True, "callId": uuid.UUID(int=rng.getrandbits(128)).hex, "requestId": "bench",
            "latencyMs": 1.0,
        }


def load(db, count, seed, today):
    rng = random.Random(seed)
    users = [{"_id": ObjectId(f"{i:024x}"), "email": f"user{i}@bench.test", "role": "user", "isActive": True}
             for i in range(1, USER_COUNT + 1)]
    db[USERS].insert_many([dict(user) for user in users])
    batch = []
    for record in synthetic_records(count, rng, users, today):
        batch.append(record)
        if len(batch) == BATCH:
            db[USAGE].insert_many(batch)
            batch = []
    if batch:
        db[USAGE].insert_many(batch)
    return users


def median_ms(client, path, query, headers, repeats):
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        response = client.get(path, query_string=query, headers=headers)
        timings.append((time.perf_counter() - started) * 1000)
        if response.status_code != 200:
            sys.exit(f"{path} answered {response.status_code}: {response.get_json()}")
    return statistics.median(timings)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, required=True)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--raw-repeats", type=int, default=3, help="repeats on the (slow) raw path")
    parser.add_argument("--skip-raw", action="store_true",
                        help="time only the rollup path (the raw path takes minutes per call at large N)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--db", default="tokenledger_bench")
    args = parser.parse_args()

    app = script_app({"MONGO_DB_NAME": args.db, "AUTO_CREATE_INDEXES": True})
    with app.app_context():
        db = get_db()
        db.client.drop_database(args.db)
        if app.config["MONGO_URI"]:
            # mongomock checks unique indexes by scanning every document on each insert
            # (quadratic loads) and never uses indexes for reads, so only MongoDB gets them.
            ensure_indexes(db)
        today = datetime.now(timezone.utc).date()
        started = time.perf_counter()
        users = load(db, args.records, args.seed, today)
        load_seconds = time.perf_counter() - started
        started = time.perf_counter()
        rollups.rebuild(db)
        rebuild_seconds = time.perf_counter() - started
        ensure_admin(db, "bench-admin@bench.test", "bench-password")
        counts = {"ledger": db[USAGE].estimated_document_count()}
        counts.update({rollup.name: db[rollup.collection].estimated_document_count() for rollup in rollups.ROLLUPS})

    client = app.test_client()
    login = client.post("/auth/login", json={"email": "bench-admin@bench.test", "password": "bench-password"})
    headers = {"Authorization": f"Bearer {login.get_json()['data']['accessToken']}"}
    window = {"startDate": (today - timedelta(days=WINDOW_DAYS)).isoformat(),
              "endDate": (today - timedelta(days=1)).isoformat()}
    heavy_user = str(users[0]["_id"])
    endpoints = [
        ("dashboard", "/admin/openai/dashboard", window),
        ("top-users", "/admin/openai/top-users", {**window, "limit": 10}),
        ("user stats", f"/admin/openai/user/{heavy_user}/stats", window),
        ("timeseries (day)", "/admin/openai/timeseries", window),
        ("breakdown (model)", "/admin/openai/breakdown", {**window, "by": "model"}),
        ("dashboard, one operation", "/admin/openai/dashboard", {**window, "operation": "testcase_generation"}),
        ("top-users, one operation", "/admin/openai/top-users", {**window, "operation": "testcase_generation"}),
    ]
    store = "MongoDB" if app.config["MONGO_URI"] else "embedded (mongomock)"
    print(f"records={args.records:,} store={store} window={WINDOW_DAYS} days "
          f"load={load_seconds:.1f}s rebuild={rebuild_seconds:.1f}s")
    print("documents: " + " | ".join(f"{name} {count:,}" for name, count in counts.items()))
    print("| endpoint | rollup median ms | raw median ms | raw / rollup |")
    print("|---|---:|---:|---:|")
    for name, path, query in endpoints:
        rollup = median_ms(client, path, {**query, "source": "rollup"}, headers, args.repeats)
        if args.skip_raw:
            print(f"| {name} | {rollup:,.1f} | not run | |")
            continue
        raw = median_ms(client, path, {**query, "source": "raw"}, headers, args.raw_repeats)
        print(f"| {name} | {rollup:,.1f} | {raw:,.1f} | {raw / rollup:,.1f}x |")
    with app.app_context():
        get_db().client.drop_database(args.db)


if __name__ == "__main__":
    main()
