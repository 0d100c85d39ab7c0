"""Analytics at the calendar's edges, ranges as wide as it allows, pages that would overflow BSON,
and exports that a spreadsheet would execute: none of them a 500 or a slow answer."""
import csv
import io
import time

import pytest

from tests.helpers import create_user, insert_records, usage_record, utc

ADMIN = "/admin/openai"


@pytest.fixture
def ledger(app):
    user = create_user(app, "=1+1@example.com")
    insert_records(app, [usage_record(user, utc(2026, 3, 5, 10), model="@SUM(A1:A9)", prompt=100, completion=50),
                         usage_record(user, utc(2026, 3, 6, 10), model="-2+3", prompt=10, completion=5)])
    return user


@pytest.mark.parametrize("path", [
    "dashboard?startDate=9999-12-31&endDate=9999-12-31",
    "dashboard?startDate=0001-01-01&endDate=0001-01-01",
    "top-users?startDate=9999-12-01&endDate=9999-12-31",
    "timeseries?endDate=0001-01-10",
    "timeseries?startDate=9999-12-25",
    "timeseries?startDate=9999-12-01&endDate=9999-12-31&bucket=week",
    "timeseries?startDate=9999-01-01&endDate=9999-12-31&bucket=month",
    "timeseries?startDate=0001-01-01&endDate=0001-03-01&bucket=week",
    "timeseries?startDate=0001-01-01&endDate=0001-12-31&bucket=month&groupBy=user",
    "breakdown?by=model&startDate=0001-01-01&endDate=9999-12-31",
    "usage?startDate=0001-01-01&endDate=9999-12-31",
    "export?startDate=9999-12-31&endDate=9999-12-31",
])
def test_dates_at_the_calendars_edges_answer(client, admin_headers, ledger, path):
    response = client.get(f"{ADMIN}/{path}", headers=admin_headers)
    assert response.status_code == 200, response.get_data(as_text=True)


def test_edge_buckets_are_clamped_to_the_calendar(client, admin_headers):
    early = client.get(f"{ADMIN}/timeseries?endDate=0001-01-10", headers=admin_headers).json["data"]
    assert (early["startDate"], early["endDate"], len(early["periods"])) == ("0001-01-01", "0001-01-10", 10)
    late = client.get(f"{ADMIN}/timeseries?startDate=9999-12-25", headers=admin_headers).json["data"]
    assert (late["startDate"], late["endDate"]) == ("9999-12-25", "9999-12-31")
    months = client.get(f"{ADMIN}/timeseries?startDate=0001-01-01&endDate=0001-03-31&bucket=month",
                        headers=admin_headers).json["data"]
    assert months["periods"] == ["0001-01", "0001-02", "0001-03"]


def test_the_widest_range_costs_what_the_data_holds(client, admin_headers, ledger):
    for path in ("dashboard", "top-users", f"user/{ledger['_id']}/stats", "export"):
        started = time.perf_counter()
        response = client.get(f"{ADMIN}/{path}?startDate=0001-01-01&endDate=9999-12-31", headers=admin_headers)
        assert time.perf_counter() - started < 2, path
        assert response.status_code == 200
    dashboard = client.get(f"{ADMIN}/dashboard?startDate=0001-01-01&endDate=9999-12-30", headers=admin_headers)
    assert dashboard.json["data"]["totalTokens"] == 165 and dashboard.json["data"]["uniqueUsers"] == 1


def test_timeseries_longer_than_its_periods_cap_is_a_422_saying_so(client, admin_headers):
    response = client.get(f"{ADMIN}/timeseries?startDate=0001-01-01&endDate=9999-12-31", headers=admin_headers)
    assert response.status_code == 422
    assert response.json["message"] == "The range is too long for day buckets"


@pytest.mark.parametrize("path, field", [
    ("user/{user}/history?page=1000000000000000000000000000000", "page"),
    ("user/{user}/history?page=10001", "page"),
    ("usage?offset=100000000000000000000", "offset"),
    ("usage?offset=1000001", "offset"),
    ("audit-log?page=99999999999999999999", "page"),
])
def test_pages_and_offsets_that_could_overflow_bson_are_a_422_naming_the_field(client, admin_headers, ledger,
                                                                               path, field):
    response = client.get(f"{ADMIN}/{path.format(user=ledger['_id'])}", headers=admin_headers)
    assert response.status_code == 422
    assert list(response.json["errors"]) == [field]


def test_the_deepest_allowed_page_answers(client, admin_headers, ledger):
    history = client.get(f"{ADMIN}/user/{ledger['_id']}/history?page=10000&limit=100", headers=admin_headers)
    assert history.status_code == 200 and history.json["data"]["data"] == []
    assert client.get(f"{ADMIN}/usage?offset=1000000", headers=admin_headers).status_code == 200


def test_csv_export_cells_cannot_become_spreadsheet_formulas(client, admin_headers, ledger):
    response = client.get(f"{ADMIN}/export", headers=admin_headers)
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert [row["userEmail"] for row in rows] == ["'=1+1@example.com", "'=1+1@example.com"]
    assert [row["modelName"] for row in rows] == ["'@SUM(A1:A9)", "'-2+3"]
    assert [row["totalTokens"] for row in rows] == ["150", "15"]
    assert rows[0]["timestamp"] == "2026-03-05T10:00:00.000Z"


def test_ndjson_export_is_unchanged(client, admin_headers, ledger):
    response = client.get(f"{ADMIN}/export?format=ndjson", headers=admin_headers)
    assert '"userEmail":"=1+1@example.com"' in response.get_data(as_text=True)
    assert '"modelName":"@SUM(A1:A9)"' in response.get_data(as_text=True)


def test_formula_quoting_rule():
    from backend.admin.export import _cell

    assert [_cell(v) for v in ("=x", "+x", "-x", "@x", "\tx", "\rx", "x=1", "", -5, 0.5, True, None)] == [
        "'=x", "'+x", "'-x", "'@x", "'\tx", "'\rx", "x=1", "", -5, 0.5, "true", ""]
