import csv
import io
import json
import tracemalloc
from datetime import timedelta

import pytest

from backend.admin.export import COLUMNS
from backend.db import USAGE, get_db
from tests.helpers import create_user, insert_records, usage_record, utc


@pytest.fixture
def seeded(app):
    ann = create_user(app, "ann@example.com")
    ben = create_user(app, "ben@example.com")
    records = [
        usage_record(ann, utc(2024, 1, 1, 10), 100, 10, 0.0001, model="gpt-4o-mini"),            # Monday
        usage_record(ann, utc(2024, 1, 7, 23, 59, 59, 999000), 200, 20, 0.0002, model="gpt-4.1"),  # Sunday
        usage_record(ben, utc(2024, 1, 8, 0, 0), 300, 30, 0.0003, provider="gemini", model="gemini-2.0-flash",
                     operation="testcase_generation"),
        usage_record(ben, utc(2024, 1, 20), 400, 40, 0.0004, active=False),
        usage_record(ben, utc(2024, 2, 2), 500, 50, 0.0005, provider="anthropic", model="claude-haiku-4-5"),
    ]
    insert_records(app, records)
    return {"ann": ann, "ben": ben, "records": records}


def test_daily_series_has_every_day_with_zeros(client, admin_headers, seeded):
    data = client.get("/admin/openai/timeseries", query_string={"startDate": "2024-01-06", "endDate": "2024-01-09"},
                      headers=admin_headers).json["data"]
    assert data["periods"] == ["2024-01-06", "2024-01-07", "2024-01-08", "2024-01-09"]
    [series] = data["series"]
    assert series["key"] == "all"
    assert [p["totalTokens"] for p in series["points"]] == [0, 220, 330, 0]
    assert [p["totalRequests"] for p in series["points"]] == [0, 1, 1, 0]
    assert series["points"][0] == {"period": "2024-01-06", "totalTokens": 0, "promptTokens": 0, "completionTokens": 0,
                                   "cachedInputTokens": 0, "cacheWriteTokens": 0, "reasoningTokens": 0,
                                   "totalCost": 0.0, "totalRequests": 0}


def test_weeks_start_on_monday_and_months_are_calendar_months(client, admin_headers, seeded):
    weeks = client.get("/admin/openai/timeseries", headers=admin_headers,
                       query_string={"bucket": "week", "startDate": "2024-01-01", "endDate": "2024-01-14"}).json["data"]
    assert weeks["periods"] == ["2024-01-01", "2024-01-08"]
    assert [p["totalTokens"] for p in weeks["series"][0]["points"]] == [110 + 220, 330]
    months = client.get("/admin/openai/timeseries", headers=admin_headers,
                        query_string={"bucket": "month", "startDate": "2024-01-01", "endDate": "2024-02-29"}).json["data"]
    assert months["periods"] == ["2024-01", "2024-02"]
    assert [p["totalTokens"] for p in months["series"][0]["points"]] == [660, 550]


def test_grouped_series_keep_the_largest_and_sum_the_rest_as_other(client, admin_headers, seeded):
    query = {"groupBy": "model", "startDate": "2024-01-01", "endDate": "2024-02-29", "bucket": "month", "limit": 2}
    data = client.get("/admin/openai/timeseries", query_string=query, headers=admin_headers).json["data"]
    assert [(s["key"], s["totals"]["totalTokens"]) for s in data["series"]] == [
        ("claude-haiku-4-5", 550), ("gemini-2.0-flash", 330), ("other", 220 + 110)]
    by_user = client.get("/admin/openai/timeseries", headers=admin_headers,
                         query_string={**query, "groupBy": "user", "limit": 10}).json["data"]
    assert [(s["key"], s["label"]) for s in by_user["series"]] == [
        (str(seeded["ben"]["_id"]), "ben@example.com"), (str(seeded["ann"]["_id"]), "ann@example.com")]


def test_series_defaults_to_the_last_30_days_and_filters_by_user(client, admin_headers, seeded):
    data = client.get("/admin/openai/timeseries", headers=admin_headers).json["data"]
    assert len(data["periods"]) == 30 and data["periods"][-1] == data["endDate"]
    one_user = client.get("/admin/openai/timeseries", headers=admin_headers, query_string={
        "userId": str(seeded["ann"]["_id"]), "startDate": "2024-01-01", "endDate": "2024-01-31", "bucket": "month"})
    assert one_user.json["data"]["series"][0]["totals"]["totalTokens"] == 330


@pytest.mark.parametrize("query, field", [
    ({"bucket": "hour"}, "bucket"), ({"groupBy": "color"}, "groupBy"), ({"userId": "nope"}, "userId"),
    ({"limit": 0}, "limit"), ({"startDate": "2020-01-01", "endDate": "2024-01-01"}, "endDate"),
    ({"source": "cache"}, "source"),
])
def test_series_validation(client, admin_headers, query, field):
    response = client.get("/admin/openai/timeseries", query_string=query, headers=admin_headers)
    assert response.status_code == 422 and field in response.json["errors"]


def test_breakdown_by_model_provider_and_operation(client, admin_headers, seeded):
    rows = client.get("/admin/openai/breakdown", query_string={"by": "model"}, headers=admin_headers).json["data"]
    assert [(r["key"], r["provider"], r["totalTokens"]) for r in rows] == [
        ("claude-haiku-4-5", "anthropic", 550), ("gemini-2.0-flash", "gemini", 330),
        ("gpt-4.1", "openai", 220), ("gpt-4o-mini", "openai", 110)]
    assert rows[0]["share"] == round(550 / 1210, 6)
    operations = client.get("/admin/openai/breakdown", query_string={"by": "operation", "userId": str(seeded["ben"]["_id"])},
                            headers=admin_headers).json["data"]
    assert [(r["key"], r["totalRequests"]) for r in operations] == [("test_generation", 1), ("testcase_generation", 1)]
    missing = client.get("/admin/openai/breakdown", headers=admin_headers)
    assert missing.status_code == 422 and "by" in missing.json["errors"]


def test_usage_logs_filter_paginate_and_summarise_by_operation(client, admin_headers, seeded):
    data = client.get("/admin/openai/usage", query_string={"limit": 2, "offset": 1}, headers=admin_headers).json["data"]
    assert (data["total"], data["limit"], data["offset"]) == (4, 2, 1)
    assert [r["totalTokens"] for r in data["data"]] == [330, 220]
    assert data["stats"] == [
        {"operation": "test_generation", "totalTokens": 880, "inputTokens": 800, "outputTokens": 80,
         "totalRequests": 3, "totalCost": 0.0008},
        {"operation": "testcase_generation", "totalTokens": 330, "inputTokens": 300, "outputTokens": 30,
         "totalRequests": 1, "totalCost": 0.0003}]
    gemini = client.get("/admin/openai/usage", query_string={"provider": "gemini"}, headers=admin_headers).json["data"]
    assert gemini["total"] == 1 and [s["operation"] for s in gemini["stats"]] == ["testcase_generation"]
    by_type = client.get("/admin/openai/usage", query_string={"operation": "test_generation", "model": "gpt-4.1"},
                         headers=admin_headers).json["data"]
    assert by_type["total"] == 1
    bad = client.get("/admin/openai/usage", query_string={"offset": -1, "limit": 500}, headers=admin_headers)
    assert bad.status_code == 422 and {"offset", "limit"} <= set(bad.json["errors"])


def test_csv_export_parses_back_to_the_ledger_rows(client, admin_headers, seeded):
    response = client.get("/admin/openai/export", query_string={"startDate": "2024-01-01", "endDate": "2024-01-31"},
                          headers=admin_headers)
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert response.headers["Content-Disposition"] == 'attachment; filename="tokenledger-usage-2024-01-01-2024-01-31.csv"'
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True))))
    assert tuple(rows[0]) == COLUMNS
    expected = sorted((r for r in seeded["records"] if r["isActive"] and r["date"] <= "2024-01-31"),
                      key=lambda r: (r["date"], r["_id"]))
    parsed = [dict(zip(rows[0], row)) for row in rows[1:]]
    assert [p["callId"] for p in parsed] == [r["callId"] for r in expected]
    first = parsed[0]
    assert (first["timestamp"], first["userEmail"], first["promptTokens"], first["cost"], first["priced"]) == (
        "2024-01-01T10:00:00.000Z", "ann@example.com", "100", "0.0001", "true")


def test_ndjson_export_with_filters(client, admin_headers, seeded):
    response = client.get("/admin/openai/export", query_string={"format": "ndjson", "userId": str(seeded["ben"]["_id"])},
                          headers=admin_headers)
    assert response.mimetype == "application/x-ndjson"
    assert response.headers["Content-Disposition"].endswith('filename="tokenledger-usage-start-now.ndjson"')
    lines = [json.loads(line) for line in response.get_data(as_text=True).splitlines()]
    assert [(r["modelName"], r["totalTokens"]) for r in lines] == [("gemini-2.0-flash", 330), ("claude-haiku-4-5", 550)]
    assert list(lines[0]) == list(COLUMNS)


def test_export_of_nothing_is_just_the_header(client, admin_headers):
    response = client.get("/admin/openai/export", headers=admin_headers)
    assert response.get_data(as_text=True) == ",".join(COLUMNS) + "\n"


def _export_peak(app, client, headers, days, per_day):
    user = create_user(app, f"bulk{days}@example.com")
    start = utc(2023, 1, 1, 12)
    with app.app_context():
        get_db()[USAGE].delete_many({})
        get_db()[USAGE].insert_many([usage_record(user, start + timedelta(days=d, seconds=i))
                                     for d in range(days) for i in range(per_day)])
    query = {"startDate": "2023-01-01", "endDate": (start + timedelta(days=days - 1)).date().isoformat()}
    tracemalloc.start()
    response = client.get("/admin/openai/export", query_string=query, headers=headers, buffered=False)
    rows = 0
    for chunk in response.response:
        rows += chunk.count(b"\n")
    response.close()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return rows - 1, peak


def test_export_streams_with_memory_that_does_not_grow_with_rows(app, client, admin_headers):
    small_rows, small_peak = _export_peak(app, client, admin_headers, days=4, per_day=150)
    large_rows, large_peak = _export_peak(app, client, admin_headers, days=16, per_day=150)
    assert (small_rows, large_rows) == (600, 2400)
    assert large_peak < 1.5 * small_peak


def test_a_record_stored_before_its_fields_existed_reads_with_their_defaults(app, client, admin_headers):
    user = create_user(app, "early@example.com")
    record = usage_record(user, utc(2023, 6, 1, 9), 70, 30, 0.00005)
    for field in ("outcome", "estimated", "usageReported", "httpStatus", "orgId", "teamId", "apiKeyId", "tags",
                  "metadata", "cacheWriteTokens"):
        record.pop(field, None)
    with app.app_context():
        get_db()[USAGE].insert_one(record)

    [row] = [json.loads(line) for line in client.get(
        "/admin/openai/export", query_string={"format": "ndjson"}, headers=admin_headers).get_data(as_text=True).splitlines()]
    assert (row["outcome"], row["estimated"], row["usageReported"], row["httpStatus"], row["orgId"], row["teamId"],
            row["apiKeyId"], row["tags"], row["metadata"], row["cacheWriteTokens"]) == (
        "ok", False, True, None, "000000000000000000000001", None, None, [], {}, 0)

    [logged] = client.get("/admin/openai/usage", query_string={"startDate": "2023-06-01", "endDate": "2023-06-01"},
                          headers=admin_headers).json["data"]["data"]
    assert (logged["outcome"], logged["estimated"], logged["orgId"], logged["tags"], logged["cacheWriteTokens"]) == (
        "ok", False, "000000000000000000000001", [], 0)
