"""Property-style: on many random ledgers, every rollup-backed view equals the same question
answered in the test from the raw ledger documents."""
import math
import random
from collections import defaultdict
from datetime import date, timedelta

import pytest

from tests.helpers import bearer, create_user, insert_records, usage_record, utc, without_projection

MODELS = [("openai", "gpt-4o-mini"), ("openai", "gpt-4.1"), ("gemini", "gemini-2.0-flash"),
          ("anthropic", "claude-haiku-4-5"), ("ollama", "llama3.2")]
OPERATIONS = ["test_generation", "testcase_generation", "testcase_generation_saved"]
# Mostly successful requests, and every kind of failed one that was still billed.
OUTCOMES = ["ok"] * 5 + ["unreadable", "failed_after_call", "client_gone", "timeout", "provider_error"]
FIRST_DAY = date(2024, 1, 27)
DAYS = 40
FIELDS = ("promptTokens", "completionTokens", "cachedInputTokens", "cacheWriteTokens", "reasoningTokens", "totalTokens")


def random_ledger(rng, users):
    records = []
    for _ in range(rng.randint(30, 70)):
        day = FIRST_DAY + timedelta(days=rng.randrange(DAYS))
        # A third of the records sit on the first or last millisecond of their UTC day.
        moment = rng.choice([(0, 0, 0, 0), (23, 59, 59, 999000),
                             (rng.randrange(24), rng.randrange(60), rng.randrange(60), 0)])
        provider, model = rng.choice(MODELS)
        prompt = rng.randint(1, 5000)
        record = usage_record(
            rng.choice(users), utc(day.year, day.month, day.day, *moment), prompt, rng.randint(0, 2000),
            round(rng.randint(0, 10**6) * 1e-10, 10), model=model, provider=provider,
            operation=rng.choice(OPERATIONS), active=rng.random() > 0.15, cached=rng.randint(0, prompt),
            outcome=rng.choice(OUTCOMES),
        )
        record["reasoningTokens"] = rng.randint(0, record["completionTokens"])
        records.append(record)
    return records


def active(records, start=None, end=None, **equal):
    return [r for r in records if r["isActive"]
            and (start is None or r["date"] >= start) and (end is None or r["date"] <= end)
            and all(r[field] == value for field, value in equal.items())]


def totals(records):
    result = {field: sum(r[field] for r in records) for field in FIELDS}
    result["totalCost"] = round(math.fsum(r["cost"] for r in records), 10)
    result["totalRequests"] = len(records)
    return result


def period(day_text, bucket):
    day = date.fromisoformat(day_text)
    if bucket == "week":
        return (day - timedelta(days=day.weekday())).isoformat()
    return day_text[:7] if bucket == "month" else day_text


def assert_same(got, expected):
    assert {k: v for k, v in got.items() if k != "totalCost"} == {k: v for k, v in expected.items() if k != "totalCost"}
    assert got["totalCost"] == pytest.approx(expected["totalCost"], abs=1e-9)


def admin_getter(app, client):
    """(get, admin headers): get(path, **query) answers an admin view's data on the rollup path,
    after checking that the raw path (source=raw) answers exactly the same."""
    create_user(app, "admin@example.com", role="admin")
    headers = bearer(client, "admin@example.com")

    def get(path, **query):
        response = client.get(f"/admin/openai/{path}", query_string=query, headers=headers)
        assert response.status_code == 200, response.json
        raw = client.get(f"/admin/openai/{path}", query_string={**query, "source": "raw"}, headers=headers)
        # The dashboard's month-end projection is of now (the clock moves between the two calls).
        assert without_projection(raw.json["data"]) == without_projection(response.json["data"]), (path, query)
        return response.json["data"]

    return get, headers


@pytest.mark.parametrize("seed", range(12))
def test_rollup_views_equal_the_raw_ledger(make_app, seed):
    rng = random.Random(seed)
    app = make_app()
    client = app.test_client()
    users = [create_user(app, f"u{i}@example.com") for i in range(rng.randint(2, 6))]
    records = random_ledger(rng, users)
    insert_records(app, records)
    get, headers = admin_getter(app, client)

    start = (FIRST_DAY + timedelta(days=rng.randrange(DAYS // 2))).isoformat()
    end = (date.fromisoformat(start) + timedelta(days=rng.randrange(DAYS // 2))).isoformat()
    operation, (provider, _) = rng.choice(OPERATIONS), rng.choice(MODELS)
    outcome = rng.choice(OUTCOMES[5:])
    ranged = {"startDate": start, "endDate": end}
    for window in ({}, ranged, {"startDate": end}, {"endDate": start},
                   {**ranged, "operation": operation}, {"provider": provider},
                   {"operation": operation, "provider": provider}, {"outcome": outcome},
                   {**ranged, "outcome": "ok", "provider": provider}):
        equal = {field: window[field] for field in ("operation", "provider", "outcome") if field in window}
        chosen = active(records, window.get("startDate"), window.get("endDate"), **equal)

        dashboard = get("dashboard", **window)
        summary = ("uniqueUsers", "byOutcome", "failedCost", "failedRequests", "projection")
        assert_same({k: v for k, v in dashboard.items() if k not in summary}, totals(chosen))
        assert dashboard["uniqueUsers"] == len({r["userId"] for r in chosen})
        failed = [r for r in chosen if r["outcome"] != "ok"]
        assert dashboard["failedRequests"] == len(failed)
        assert dashboard["failedCost"] == pytest.approx(totals(failed)["totalCost"], abs=1e-9)
        assert {item["outcome"]: item["totalRequests"] for item in dashboard["byOutcome"]} == {
            o: len([r for r in chosen if r["outcome"] == o]) for o in {r["outcome"] for r in chosen}}

        by_user = defaultdict(list)
        for r in chosen:
            by_user[str(r["userId"])].append(r)
        expected_top = sorted(by_user, key=lambda uid: (-totals(by_user[uid])["totalTokens"], uid))[:3]
        top = get("top-users", limit=3, **window)
        assert [row["_id"] for row in top] == expected_top
        for row in top:
            assert_same({k: v for k, v in row.items() if k not in ("_id", "userEmail")}, totals(by_user[row["_id"]]))

        for user in users:
            stats = get(f"user/{user['_id']}/stats", **window)
            assert_same(stats, totals(by_user.get(str(user["_id"]), [])))
        history = client.get(f"/admin/openai/user/{users[0]['_id']}/history", query_string={**window, "limit": 100},
                             headers=headers).json["data"]
        mine = sorted(by_user.get(str(users[0]["_id"]), []), key=lambda r: (r["timestamp"], r["_id"]), reverse=True)
        assert history["total"] == len(mine)
        assert [r["callId"] for r in history["data"]] == [r["callId"] for r in mine]

        for by, field in (("model", "modelName"), ("provider", "provider"), ("operation", "operation"),
                          ("outcome", "outcome")):
            rows = get("breakdown", by=by, **window)
            groups = defaultdict(list)
            for r in chosen:
                groups[r[field]].append(r)
            assert sorted(row["key"] for row in rows) == sorted(groups)
            for row in rows:
                assert_same({k: v for k, v in row.items() if k not in ("key", "provider", "share")},
                            totals(groups[row["key"]]))
        # One user's breakdown reads the per-user daily rollup, the others the user-less totals.
        mine = by_user.get(str(users[0]["_id"]), [])
        rows = get("breakdown", by="operation", userId=str(users[0]["_id"]), **window)
        assert sorted(row["key"] for row in rows) == sorted({r["operation"] for r in mine})
        for row in rows:
            assert_same({k: v for k, v in row.items() if k not in ("key", "provider", "share")},
                        totals([r for r in mine if r["operation"] == row["key"]]))

    series_start, series_end = FIRST_DAY.isoformat(), (FIRST_DAY + timedelta(days=DAYS - 1)).isoformat()
    for bucket in ("day", "week", "month"):
        for group_by, field in (("none", None), ("model", "modelName"), ("user", "userId")):
            data = get("timeseries", bucket=bucket, groupBy=group_by, startDate=series_start,
                       endDate=series_end, limit=50)
            chosen = active(records, series_start, series_end)
            for series in data["series"]:
                members = [r for r in chosen if field is None or str(r[field]) == series["key"]]
                assert_same(series["totals"], totals(members))
                for point in series["points"]:
                    assert_same({k: v for k, v in point.items() if k != "period"},
                                totals([r for r in members if period(r["date"], bucket) == point["period"]]))

    usage = get("usage", startDate=start, endDate=end)
    chosen = active(records, start, end)
    assert usage["total"] == len(chosen)
    for stat in usage["stats"]:
        members = totals([r for r in chosen if r["operation"] == stat["operation"]])
        assert (stat["totalTokens"], stat["inputTokens"], stat["outputTokens"], stat["totalRequests"]) == (
            members["totalTokens"], members["promptTokens"], members["completionTokens"], members["totalRequests"])
    assert sorted(s["operation"] for s in usage["stats"]) == sorted({r["operation"] for r in chosen})


TAGS = ["ci", "nightly", "feature:login", "env:prod"]
BREAKDOWNS = (("model", "modelName"), ("provider", "provider"), ("operation", "operation"), ("outcome", "outcome"),
              ("org", "orgId"), ("team", "teamId"), ("tag", "tags"))


def matching(records, start, end, filters):
    """The active records in [start, end] matching `filters`; a tag filter matches a record carrying it."""
    chosen = active(records, start, end)
    for field, value in filters.items():
        if field == "tag":
            chosen = [r for r in chosen if value in r.get("tags", [])]
        else:
            chosen = [r for r in chosen if str(r[field]) == str(value)]
    return chosen


def groups_of(records, field, only_tag=None):
    """{str(key): records}; by tags, a record under each of its tags (only the filtered one when a tag filters)."""
    groups = defaultdict(list)
    for r in records:
        for key in (r.get("tags", []) if field == "tags" else [r[field]]):
            if only_tag is None or field != "tags" or key == only_tag:
                groups[None if key is None else str(key)].append(r)
    return groups


@pytest.mark.parametrize("seed", range(6))
def test_views_of_organizations_teams_and_tags_equal_the_raw_ledger(make_app, seed):
    """Each filter combination is answered by a different rollup (or, for a few, the ledger):
    every view equals both the raw path and totals computed here from the documents."""
    from backend.db import get_db
    from backend.orgs import repository as orgs

    rng = random.Random(100 + seed)
    app = make_app()
    client = app.test_client()
    users = [create_user(app, f"u{i}@example.com") for i in range(rng.randint(2, 5))]
    with app.app_context():
        db = get_db()
        org_ids = [orgs.insert_org(db, f"Org {i}", utc(2024, 1, 1))["_id"] for i in range(2)]
        teams = {org: [orgs.insert_team(db, org, f"Team {i}", utc(2024, 1, 1))["_id"] for i in range(2)]
                 for org in org_ids}
    records = random_ledger(rng, users)
    for record in records:
        record["orgId"] = rng.choice(org_ids)
        record["teamId"] = rng.choice([None, *teams[record["orgId"]]])
        record["tags"] = rng.sample(TAGS, rng.choice((0, 1, 1, 2, 3)))
    insert_records(app, records)
    get, _ = admin_getter(app, client)

    org, tag = rng.choice(org_ids), rng.choice(TAGS)
    team = rng.choice(teams[org])
    operation, (provider, _), outcome = rng.choice(OPERATIONS), rng.choice(MODELS), rng.choice(OUTCOMES[5:])
    start = (FIRST_DAY + timedelta(days=rng.randrange(DAYS // 2))).isoformat()
    ranged = {"startDate": start, "endDate": (date.fromisoformat(start) + timedelta(days=15)).isoformat()}
    for window in ({}, {"orgId": org}, {"teamId": team}, {"tag": tag}, {"tag": tag, "orgId": org, **ranged},
                   {"tag": tag, "operation": operation}, {"tag": tag, "outcome": outcome},
                   {"tag": tag, "provider": provider, "teamId": team}, {"orgId": org, "operation": operation},
                   {"teamId": team, "outcome": "ok", **ranged}):
        filters = {key: value for key, value in window.items() if key not in ("startDate", "endDate")}
        chosen = matching(records, window.get("startDate"), window.get("endDate"),
                          {("orgId" if k == "orgId" else k): v for k, v in filters.items()})
        query = {key: str(value) for key, value in window.items()}

        dashboard = get("dashboard", **query)
        summary = ("uniqueUsers", "byOutcome", "failedCost", "failedRequests", "projection")
        assert_same({k: v for k, v in dashboard.items() if k not in summary}, totals(chosen))
        assert dashboard["uniqueUsers"] == len({r["userId"] for r in chosen})
        assert {item["outcome"]: item["totalRequests"] for item in dashboard["byOutcome"]} == {
            key: len(members) for key, members in groups_of(chosen, "outcome").items()}

        by_user = groups_of(chosen, "userId")
        top = get("top-users", limit=50, **query)
        assert [row["_id"] for row in top] == sorted(by_user, key=lambda uid: (-totals(by_user[uid])["totalTokens"],
                                                                              uid))
        for user in users:
            assert_same(get(f"user/{user['_id']}/stats", **query), totals(by_user.get(str(user["_id"]), [])))

        for by, field in BREAKDOWNS:
            groups = groups_of(chosen, field, filters.get("tag"))
            rows = get("breakdown", by=by, **query)
            assert sorted(str(row["key"]) for row in rows) == sorted(str(key) for key in groups), (by, window)
            for row in rows:
                assert_same({k: v for k, v in row.items() if k not in ("key", "provider", "share", "label")},
                            totals(groups[row["key"]]))
        mine = by_user.get(str(users[0]["_id"]), [])
        for by, field in (("tag", "tags"), ("model", "modelName")):
            rows = get("breakdown", by=by, userId=str(users[0]["_id"]), **query)
            groups = groups_of(mine, field, filters.get("tag"))
            assert {row["key"]: row["totalTokens"] for row in rows} == {
                key: totals(members)["totalTokens"] for key, members in groups.items()}

        for group_by, field in (("none", None), ("model", "modelName"), ("user", "userId")):
            series = get("timeseries", groupBy=group_by, limit=50, startDate=FIRST_DAY.isoformat(),
                         endDate=(FIRST_DAY + timedelta(days=DAYS - 1)).isoformat(),
                         **{k: v for k, v in query.items() if k not in ("startDate", "endDate")})["series"]
            in_series = matching(records, None, None, filters)
            for entry in series:
                members = [r for r in in_series if field is None or str(r[field]) == entry["key"]]
                assert_same(entry["totals"], totals(members))
    with app.app_context():
        from backend.usage import rollups
        assert rollups.check(get_db()) == []
