"""Benchmark the admin analytics on the rollup path and on the raw-ledger path.

Usage: python scripts/bench_analytics.py --records N [N ...] [--repeats K] [--raw-repeats K] [--skip-raw]
           [--orgs O] [--teams-per-org T] [--seed S] [--db NAME] [--only TEXT ...] [--time-zone ZONE]

For each N, loads N synthetic ledger records (about 1,000 users with a skewed spread, five
models, three operations, 90 days) into its own database of the configured store (MONGO_URI,
or the embedded store), builds the rollups with the same rebuild the ops script uses, then
times each admin endpoint, called through the app, with source=rollup and source=raw.

The users are spread over O organizations with T teams each (and some users in no team), their
memberships stored on the user documents as backend/orgs stores them, and every record carries
its user's orgId and teamId. Endpoints are called as a platform admin and as the organization
admin of the first organization (which holds the heaviest user): the server confines the
latter's views to that organization.

Every variant of an endpoint (each N, rollup and raw) is called in the same rounds, in
alternating order (ABBA), after one untimed call on the rollup path, so the machine's load
drifts over all of them alike; the table gives medians with min-max, and the ratios between
variants are measured in this one run. With several N the table adds each source's growth
(largest N / smallest N): flat in N is a growth near 1x on the rollup path. With --time-zone,
each rollup view is also timed in that zone's local days (timeZone=ZONE: the rollups' quarter-hour
slots) in the same rounds, with its ratio to the UTC view at each N.

The databases named <--db>_<N> (default tokenledger_bench_<N>) are dropped before and after:
never point them at real data.
"""
import argparse
import math
import random
import statistics
import sys
import time
import uuid
from datetime import datetime, time as clock_time, timedelta, timezone

from _bootstrap import script_app
from bson import ObjectId

from backend.auth import repository as users_repository
from backend.auth.caller import ORG_ADMIN as ADMIN_ROLE, ORG_MEMBER as MEMBER_ROLE
from backend.auth.services import ensure_admin, register_user
from backend.clock import utc_now
from backend.db import USAGE, USERS, get_db
from backend.indexes import ensure_indexes
from backend.orgs import repository as orgs
from backend.usage import rollups

MODELS = [("openai", "gpt-4o-mini", 0.15, 0.60, 40), ("openai", "gpt-4.1", 2.0, 8.0, 15),
          ("gemini", "gemini-2.5-flash", 0.30, 2.50, 20), ("anthropic", "claude-haiku-4-5", 1.0, 5.0, 20),
          ("ollama", "llama3.2", 0.0, 0.0, 5)]
OPERATIONS = [("test_generation", 60), ("testcase_generation", 25), ("testcase_generation_saved", 15)]
USER_COUNT = 1000
DAYS = 90
BATCH = 20_000
WINDOW_DAYS = 30
PASSWORD = "bench-password"
PLATFORM_ADMIN, ORG_ADMIN = "bench-admin@bench.test", "bench-org-admin@bench.test"
PLATFORM, ORG = "platform admin", "org admin"
ROLLUP, RAW = "rollup", "raw"
COST_TOLERANCE = 1e-6


# What the calls were for: 0-3 tags a call (a call counts under each in the tag rollup).
TAGS = ["ci", "nightly", "feature:login", "feature:checkout", "env:prod", "env:staging", "team-import", "smoke"]


def synthetic_records(count, rng, users, today):
    """Heavy users make most calls (weights ~ 1/rank), as in real usage. Shaped as
    backend/usage/recorder.py's LedgerRecord writes them, outcome and membership included."""
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
            "userId": user["_id"], "userEmail": user["email"], "orgId": user["orgId"], "teamId": user["teamId"],
            "apiKeyId": None, "tags": rng.sample(TAGS, rng.choice((0, 1, 1, 2, 3))), "metadata": {},
            "provider": provider, "modelName": model,
            "responseModel": model, "promptTokens": prompt, "completionTokens": completion,
            "cachedInputTokens": cached, "cacheWriteTokens": 0, "reasoningTokens": 0,
            "totalTokens": prompt + completion, "cost": cost, "priced": provider != "ollama",
            "usageReported": True, "demo": False, "operation": rng.choices(OPERATIONS, operation_weights)[0][0],
            "outcome": "ok", "httpStatus": 200,
            "timestamp": at, "date": at.strftime("%Y-%m-%d"), "month": at.strftime("%Y-%m"), "year": at.year,
            "isActive": True, "callId": uuid.UUID(int=rng.getrandbits(128)).hex, "requestId": "bench",
            "latencyMs": 1.0,
        }


def create_orgs(db, org_count, teams_per_org):
    """[(org id, [team ids])], through the repository that the /admin/orgs endpoints use."""
    now = utc_now()
    created = []
    for o in range(1, org_count + 1):
        org_id = orgs.insert_org(db, f"Bench org {o}", now)["_id"]
        teams = [orgs.insert_team(db, org_id, f"Team {o}.{t}", now)["_id"] for t in range(1, teams_per_org + 1)]
        created.append((org_id, teams))
    return created


def bench_users(memberships):
    """USER_COUNT users, dealt round-robin over the organizations in rank order (so each one has
    heavy and light users) and within one over its teams plus "no team"."""
    users = []
    for i in range(USER_COUNT):
        org_id, teams = memberships[i % len(memberships)]
        slot = (i // len(memberships)) % (len(teams) + 1)
        users.append({"_id": ObjectId(f"{i + 1:024x}"), "email": f"user{i + 1}@bench.test", "role": "user",
                      "isActive": True, "orgId": org_id, "orgRole": MEMBER_ROLE,
                      "teamId": teams[slot] if slot < len(teams) else None})
    return users


def load(db, count, seed, today, memberships):
    rng = random.Random(seed)
    users = bench_users(memberships)
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


def prepare(count, args, today):
    """An app over a freshly loaded database of `count` records: (app, client, context)."""
    name = f"{args.db}_{count}"
    app = script_app({"MONGO_DB_NAME": name, "AUTO_CREATE_INDEXES": True, "START_UP_TASKS": True})
    with app.app_context():
        db = get_db()
        db.client.drop_database(name)
        if app.config["MONGO_URI"]:
            # mongomock checks unique indexes by scanning every document on each insert
            # (quadratic loads) and never uses indexes for reads, so only MongoDB gets them.
            ensure_indexes(db)
        memberships = create_orgs(db, args.orgs, args.teams_per_org)
        started = time.perf_counter()
        users = load(db, count, args.seed, today, memberships)
        load_seconds = time.perf_counter() - started
        started = time.perf_counter()
        rollups.rebuild(db)
        rebuild_seconds = time.perf_counter() - started
        ensure_admin(db, PLATFORM_ADMIN, PASSWORD, now=utc_now())
        org_admin = register_user(db, ORG_ADMIN, PASSWORD, "Bench org admin", now=utc_now())
        users_repository.set_membership(db, org_admin["_id"], memberships[0][0], ADMIN_ROLE, None, org_admin["orgId"])
        counts = {"ledger": db[USAGE].estimated_document_count()}
        counts.update({rollup.name: db[rollup.collection].estimated_document_count() for rollup in rollups.ROLLUPS})
    # users[1] is the heaviest user of the second organization (users are dealt round-robin).
    context = {"org": str(memberships[0][0]), "team": str(memberships[0][1][0]) if memberships[0][1] else None,
               "heavy_user": str(users[0]["_id"]), "other_org_user": str(users[1]["_id"]) if args.orgs > 1 else None}
    print(f"records={count:,} db={name} load={load_seconds:.1f}s rebuild={rebuild_seconds:.1f}s")
    print("  documents: " + " | ".join(f"{key} {value:,}" for key, value in counts.items()))
    return app, app.test_client(), context


_signed_in = {}


def sign_in(client):
    """{caller: headers}, signed in again once half the access token's life has gone: a run at
    100k records outlasts a token, and logins are rate-limited, so not one per endpoint."""
    lifetime = client.application.config["JWT_ACCESS_TOKEN_EXPIRES"].total_seconds()
    signed_at, headers = _signed_in.get(id(client), (-math.inf, None))
    if time.monotonic() - signed_at < lifetime / 2:
        return headers
    headers = {}
    for caller, email in ((PLATFORM, PLATFORM_ADMIN), (ORG, ORG_ADMIN)):
        login = client.post("/auth/login", json={"email": email, "password": PASSWORD})
        if login.status_code != 200:
            sys.exit(f"login of {email} answered {login.status_code}: {login.get_json()}")
        headers[caller] = {"Authorization": f"Bearer {login.get_json()['data']['accessToken']}"}
    _signed_in[id(client)] = (time.monotonic(), headers)
    return headers


def endpoints(window, context):
    """(label, caller, path, query, expected status); the org admin's queries name no organization:
    the server adds it."""
    user = context["heavy_user"]
    one_operation = {**window, "operation": "testcase_generation"}
    rows = [
        ("dashboard", PLATFORM, "/admin/openai/dashboard", window),
        ("top-users", PLATFORM, "/admin/openai/top-users", {**window, "limit": 10}),
        ("user stats", PLATFORM, f"/admin/openai/user/{user}/stats", window),
        ("timeseries (day)", PLATFORM, "/admin/openai/timeseries", window),
        ("breakdown (model)", PLATFORM, "/admin/openai/breakdown", {**window, "by": "model"}),
        ("dashboard, one operation", PLATFORM, "/admin/openai/dashboard", one_operation),
        ("top-users, one operation", PLATFORM, "/admin/openai/top-users", one_operation),
        ("breakdown (org)", PLATFORM, "/admin/openai/breakdown", {**window, "by": "org"}),
        ("breakdown (team)", PLATFORM, "/admin/openai/breakdown", {**window, "by": "team"}),
        ("dashboard, orgId=", PLATFORM, "/admin/openai/dashboard", {**window, "orgId": context["org"]}),
        ("breakdown (tag)", PLATFORM, "/admin/openai/breakdown", {**window, "by": "tag"}),
        ("dashboard, tag=", PLATFORM, "/admin/openai/dashboard", {**window, "tag": "ci"}),
        ("breakdown (tag)", ORG, "/admin/openai/breakdown", {**window, "by": "tag"}),
        ("dashboard", ORG, "/admin/openai/dashboard", window),
        ("top-users", ORG, "/admin/openai/top-users", {**window, "limit": 10}),
        ("user stats", ORG, f"/admin/openai/user/{user}/stats", window),
        ("timeseries (day)", ORG, "/admin/openai/timeseries", window),
        ("breakdown (team)", ORG, "/admin/openai/breakdown", {**window, "by": "team"}),
        ("dashboard, one operation", ORG, "/admin/openai/dashboard", one_operation),
    ]
    rows = [(*row, 200) for row in rows]
    if context["team"]:
        rows.append(("dashboard, teamId=", PLATFORM, "/admin/openai/dashboard", {**window, "teamId": context["team"]},
                     200))
    if context["other_org_user"]:
        # Refused, but only once the user is known to have made no call in the organization.
        rows.append(("user stats, user of another org (404)", ORG,
                     f"/admin/openai/user/{context['other_org_user']}/stats", window, 404))
    return rows


def call(client, path, query, headers, status=200):
    """(milliseconds, data) of one request; any other status than the one expected ends the run."""
    started = time.perf_counter()
    response = client.get(path, query_string=query, headers=headers)
    elapsed = (time.perf_counter() - started) * 1000
    if response.status_code != status:
        sys.exit(f"{path} {query} answered {response.status_code}: {response.get_json()}")
    return elapsed, response.get_json().get("data")


def measure(variants, repeats):
    """{variant: ([ms], first answer)}: one untimed rollup call each, then rounds calling every
    variant that still needs samples, in forward then reverse order (ABBA)."""
    for key, run in variants.items():
        if key[1].startswith(ROLLUP):
            run()
    samples = {key: ([], None) for key in variants}
    order = list(variants)
    for round_number in range(max(repeats.values())):
        for key in order if round_number % 2 == 0 else reversed(order):
            timings, answer = samples[key]
            if len(timings) < repeats[key[1].split()[0]]:
                elapsed, data = variants[key]()
                timings.append(elapsed)
                samples[key] = (timings, answer if answer is not None else data)
    return samples


def same(left, right):
    """Equal answers, costs and shares compared to COST_TOLERANCE (sums in another order)."""
    if isinstance(left, float) or isinstance(right, float):
        return isinstance(left, (int, float)) and isinstance(right, (int, float)) and math.isclose(
            left, right, rel_tol=0, abs_tol=COST_TOLERANCE)
    if isinstance(left, dict) and isinstance(right, dict):
        return left.keys() == right.keys() and all(same(left[k], right[k]) for k in left)
    if isinstance(left, list) and isinstance(right, list):
        return len(left) == len(right) and all(same(a, b) for a, b in zip(left, right))
    return left == right


def cell(timings):
    if not timings:
        return "not run"
    return f"{statistics.median(timings):,.1f} ({min(timings):,.1f}-{max(timings):,.1f})"


def ratio(numerator, denominator):
    if not numerator or not denominator:
        return ""
    return f"{statistics.median(numerator) / statistics.median(denominator):,.2f}x"


def table_header(counts, sources):
    columns = [f"{source} {count:,}" for source in sources for count in counts]
    if len(counts) > 1:
        columns += [f"{source} {counts[-1]:,} / {counts[0]:,}" for source in sources]
    if RAW in sources:
        columns.append(f"raw / rollup at {counts[-1]:,}")
    columns += [f"{source.split()[1]} / UTC at {count:,}" for source in sources if " " in source for count in counts]
    return ["endpoint", "caller", *columns]


def table_row(label, caller, samples, counts, sources):
    timings = {(count, source): samples[(count, source)][0] for count in counts for source in sources}
    cells = [cell(timings[(count, source)]) for source in sources for count in counts]
    if len(counts) > 1:
        cells += [ratio(timings[(counts[-1], source)], timings[(counts[0], source)]) for source in sources]
    if RAW in sources:
        cells.append(ratio(timings[(counts[-1], RAW)], timings[(counts[-1], ROLLUP)]))
    cells += [ratio(timings[(count, source)], timings[(count, ROLLUP)]) for source in sources if " " in source
              for count in counts]
    return [label, caller, *cells]


def mode_query(query, mode):
    """The query of one mode: "rollup", "raw" or "rollup <zone>"."""
    source, *zone = mode.split()
    return {**query, "source": source, **({"timeZone": zone[0]} if zone else {})}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, nargs="+", required=True,
                        help="one or more ledger sizes, each in its own database, timed side by side")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--raw-repeats", type=int, default=3, help="repeats on the (slow) raw path")
    parser.add_argument("--skip-raw", action="store_true",
                        help="time only the rollup path (the raw path takes minutes per call at large N)")
    parser.add_argument("--orgs", type=int, default=5, help="organizations the users are spread over (>= 1)")
    parser.add_argument("--teams-per-org", type=int, default=3,
                        help="teams in each organization (each also has members in no team)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--db", default="tokenledger_bench", help="database name prefix: <db>_<N>")
    parser.add_argument("--time-zone", metavar="ZONE",
                        help="also time each rollup view in this IANA zone's local days, e.g. Asia/Kolkata")
    parser.add_argument("--only", action="append", metavar="TEXT",
                        help='time only the rows whose "endpoint (caller)" contains TEXT (repeatable), '
                             'e.g. --only "org admin" --only "breakdown (team)"')
    args = parser.parse_args()
    if args.orgs < 1 or args.teams_per_org < 0:
        parser.error("--orgs must be at least 1 and --teams-per-org at least 0")

    counts = sorted(set(args.records))
    sources = (ROLLUP,) + ((f"{ROLLUP} {args.time_zone}",) if args.time_zone else ()) + (() if args.skip_raw
                                                                                         else (RAW,))
    today = datetime.now(timezone.utc).date()
    window = {"startDate": (today - timedelta(days=WINDOW_DAYS)).isoformat(),
              "endDate": (today - timedelta(days=1)).isoformat()}
    benches = {count: prepare(count, args, today) for count in counts}
    store = "MongoDB" if benches[counts[0]][0].config["MONGO_URI"] else "embedded (mongomock)"
    print(f"store={store} window={WINDOW_DAYS} days orgs={args.orgs} teams per org={args.teams_per_org} "
          f"repeats rollup={args.repeats} raw={0 if args.skip_raw else args.raw_repeats}; ms: median (min-max)")

    header = table_header(counts, sources)
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * 2 + "---:|" * (len(header) - 2))
    problems = []
    rows = [endpoints(window, context) for _, _, context in benches.values()]
    for index, (label, caller, *_) in enumerate(rows[0]):
        if args.only and not any(text in f"{label} ({caller})" for text in args.only):
            continue
        variants = {}
        for count, (_, client, _) in benches.items():
            _, _, path, query, status = rows[counts.index(count)][index]
            tokens = sign_in(client)
            for source in sources:
                variants[(count, source)] = (lambda c=client, p=path, q=mode_query(query, source), h=tokens[caller],
                                             s=status: call(c, p, q, h, s))
        samples = measure(variants, {ROLLUP: args.repeats, RAW: args.raw_repeats})
        print("| " + " | ".join(table_row(label, caller, samples, counts, sources)) + " |", flush=True)
        if RAW in sources:
            problems += [f"{label} ({caller}) at {count:,}: rollup and raw answers differ" for count in counts
                         if not same(samples[(count, ROLLUP)][1], samples[(count, RAW)][1])]

    # The server, not the query, confines an organization admin: their dashboard must be the
    # platform admin's for their organization, and (with other organizations) smaller than the
    # whole platform's.
    for count, (_, client, context) in benches.items():
        tokens = sign_in(client)
        # The month-end projection moves with the clock between two calls: the totals are compared.
        scoped = call(client, "/admin/openai/dashboard", window, tokens[ORG])[1]
        named = call(client, "/admin/openai/dashboard", {**window, "orgId": context["org"]}, tokens[PLATFORM])[1]
        scoped.pop("projection", None), named.pop("projection", None)
        whole = call(client, "/admin/openai/dashboard", window, tokens[PLATFORM])[1]
        if not same(scoped, named) or (args.orgs > 1 and scoped["totalRequests"] >= whole["totalRequests"]):
            problems.append(f"at {count:,}: the org admin's dashboard is not confined to their organization")
        print(f"records={count:,}: org admin's dashboard {scoped['totalRequests']:,} requests, "
              f"{scoped['uniqueUsers']} users; platform {whole['totalRequests']:,} requests, "
              f"{whole['uniqueUsers']} users (window)")
    for problem in problems:
        print(f"CHECK FAILED: {problem}")

    for count, (app, *_) in benches.items():
        with app.app_context():
            get_db().client.drop_database(f"{args.db}_{count}")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
