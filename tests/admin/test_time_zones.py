"""Analytics on an organization's own local days (issue 27), from the rollups' quarter-hour slots,
checked against the raw ledger. Expected days are worked out by hand from the zones' offsets."""
import random
from datetime import timedelta

import pytest

from tests.helpers import bearer, create_user, insert_records, usage_record, utc, without_projection
from tests.orgs.support import make_org, member

VIEWS = (("/admin/openai/dashboard", {}), ("/admin/openai/breakdown", {"by": "model"}),
         ("/admin/openai/breakdown", {"by": "tag"}), ("/admin/openai/breakdown", {"by": "operation"}),
         ("/admin/openai/top-users", {}), ("/admin/openai/timeseries", {"bucket": "day"}),
         ("/admin/openai/timeseries", {"bucket": "week", "groupBy": "model"}),
         ("/admin/openai/timeseries", {"bucket": "month", "groupBy": "user"}), ("/admin/openai/usage", {}),
         ("/admin/openai/breakdown", {"by": "tag", "tag": "ci"}))


@pytest.fixture
def admin(app, client):
    create_user(app, "root@example.com", role="admin")
    return bearer(client, "root@example.com")


def days(client, headers, **query):
    response = client.get("/admin/openai/timeseries", query_string={"bucket": "day", **query}, headers=headers)
    assert response.status_code == 200, response.json
    return response.json, {p["period"]: p["totalRequests"] for p in response.json["data"]["series"][0]["points"]
                           if p["totalRequests"]}


def test_calls_at_10_and_20_utc_are_one_utc_day_and_two_jakarta_days(app, client, admin):
    user = create_user(app, "dev@example.com")
    insert_records(app, [usage_record(user, utc(2026, 12, 3, 10)), usage_record(user, utc(2026, 12, 3, 20))])
    body, utc_days = days(client, admin, startDate="2026-12-01", endDate="2026-12-06")
    assert body["timeZone"] == "UTC" and utc_days == {"2026-12-03": 2}
    # Jakarta is UTC+7: 10:00 UTC is 17:00 on the 3rd, 20:00 UTC is 03:00 on the 4th.
    body, local = days(client, admin, startDate="2026-12-01", endDate="2026-12-06", timeZone="Asia/Jakarta")
    assert body["timeZone"] == "Asia/Jakarta" and local == {"2026-12-03": 1, "2026-12-04": 1}
    one_day = client.get("/admin/openai/dashboard", query_string={
        "startDate": "2026-12-04", "endDate": "2026-12-04", "timeZone": "Asia/Jakarta"}, headers=admin).json
    assert one_day["data"]["totalRequests"] == 1 and one_day["timeZone"] == "Asia/Jakarta"
    history = client.get(f"/admin/openai/user/{user['_id']}/history", query_string={
        "startDate": "2026-12-04", "endDate": "2026-12-04", "timeZone": "Asia/Jakarta"}, headers=admin).json
    assert [r["timestamp"] for r in history["data"]["data"]] == ["2026-12-03T20:00:00.000Z"]


def test_daylight_saving_days_in_new_york_have_23_and_25_hours_of_calls(app, client, admin):
    user = create_user(app, "dev@example.com")
    # One call at the start of every UTC hour around both changes of 2026 (8 March, 1 November).
    hourly = [usage_record(user, utc(2026, 3, 7) + timedelta(hours=h)) for h in range(72)]
    hourly += [usage_record(user, utc(2026, 10, 31) + timedelta(hours=h)) for h in range(72)]
    insert_records(app, hourly)
    _, spring = days(client, admin, startDate="2026-03-08", endDate="2026-03-08", timeZone="America/New_York")
    _, autumn = days(client, admin, startDate="2026-11-01", endDate="2026-11-01", timeZone="America/New_York")
    assert spring == {"2026-03-08": 23} and autumn == {"2026-11-01": 25}
    for source in ("raw", "rollup"):
        body = client.get("/admin/openai/dashboard", query_string={
            "startDate": "2026-03-08", "endDate": "2026-03-08", "timeZone": "America/New_York", "source": source},
            headers=admin).json
        assert body["data"]["totalRequests"] == 23


@pytest.mark.parametrize("zone", ["Asia/Kolkata", "Asia/Kathmandu", "America/St_Johns", "Australia/Eucla"])
def test_rollup_views_equal_the_raw_ledger_in_zones_with_30_and_45_minute_offsets(app, client, admin, zone):
    rng = random.Random(zone)
    users = [create_user(app, f"u{n}@example.com") for n in range(3)]
    records = []
    for _ in range(120):
        at = utc(2026, 11, 28) + timedelta(minutes=rng.randrange(0, 9 * 24 * 60))
        record = usage_record(rng.choice(users), at, prompt=rng.randrange(1, 500), completion=rng.randrange(0, 90),
                              cost=rng.randrange(1, 99) / 10**6, model=rng.choice(["gpt-4o-mini", "gpt-4.1"]),
                              operation=rng.choice(["test_generation", "embedding"]))
        record["tags"] = rng.sample(["ci", "web", "mobile"], rng.randrange(0, 3))
        records.append(record)
    insert_records(app, records)
    for view, extra in VIEWS:
        query = {"startDate": "2026-11-30", "endDate": "2026-12-04", "timeZone": zone, **extra}
        rollup = client.get(view, query_string=query, headers=admin)
        raw = client.get(view, query_string={**query, "source": "raw"}, headers=admin)
        assert rollup.status_code == raw.status_code == 200, (view, rollup.json)
        # The dashboard's projection is of the month under way, read from the rollups for both.
        assert without_projection(rollup.json["data"]) == without_projection(raw.json["data"]), (view, extra)
    assert app.test_cli_runner().invoke(args=["rebuild-rollups", "--check"]).exit_code == 0


def test_an_unknown_zone_is_a_422_naming_it(client, admin):
    response = client.get("/admin/openai/dashboard", query_string={"timeZone": "Mars/Olympus"}, headers=admin)
    assert response.status_code == 422
    assert "Mars/Olympus" in response.json["errors"]["timeZone"][0]
    created = client.post("/admin/orgs", json={"name": "Ares", "timeZone": "../etc/passwd"}, headers=admin)
    assert created.status_code == 422 and "../etc/passwd" in created.json["errors"]["timeZone"][0]


def test_members_and_organization_admins_see_their_organizations_days_and_platform_admins_utc(app, client, admin):
    org = client.post("/admin/orgs", json={"name": "Jakarta QA", "timeZone": "Asia/Jakarta"}, headers=admin)
    assert org.status_code == 201 and org.json["data"]["timeZone"] == "Asia/Jakarta"
    org_id = org.json["data"]["id"]
    dev, dev_headers = member(app, client, admin, org_id, "dev@example.com")
    _, boss = member(app, client, admin, org_id, "boss@example.com", role="admin")
    insert_records(app, [usage_record(dev, utc(2026, 12, 3, 20), org_id=org_id)])
    assert days(client, boss, startDate="2026-12-01", endDate="2026-12-06")[1] == {"2026-12-04": 1}
    assert days(client, admin, startDate="2026-12-01", endDate="2026-12-06")[1] == {"2026-12-03": 1}
    assert days(client, admin, startDate="2026-12-01", endDate="2026-12-06", orgId=org_id)[1] == {"2026-12-04": 1}
    mine = client.get("/api/me/usage/history", query_string={"startDate": "2026-12-04", "endDate": "2026-12-04"},
                      headers=dev_headers).json
    assert mine["timeZone"] == "Asia/Jakarta" and mine["data"]["total"] == 1
    assert client.get("/api/me/usage/breakdown", query_string={"by": "model", "startDate": "2026-12-03",
                                                               "endDate": "2026-12-03"},
                      headers=dev_headers).json["data"] == []


def test_the_export_counts_local_days(app, client, admin):
    user = create_user(app, "dev@example.com")
    insert_records(app, [usage_record(user, utc(2026, 12, 3, 16, 59)), usage_record(user, utc(2026, 12, 3, 17))])
    response = client.get("/admin/openai/export", query_string={
        "startDate": "2026-12-04", "endDate": "2026-12-04", "timeZone": "Asia/Jakarta", "format": "ndjson"},
        headers=admin)
    lines = response.get_data(as_text=True).strip().splitlines()
    assert len(lines) == 1 and '"2026-12-03T17:00:00.000Z"' in lines[0]
    assert response.headers["X-Time-Zone"] == "Asia/Jakarta"


def test_a_zone_change_is_shown_pending_until_the_next_midnight_of_the_old_zone(app, client, admin):
    org_id = make_org(client, admin, "Moving")
    app.config["CLOCK"] = lambda: utc(2026, 12, 4, 10)
    changed = client.patch(f"/admin/orgs/{org_id}", json={"timeZone": "Asia/Jakarta"}, headers=admin).json["data"]
    assert changed["timeZone"] == "Asia/Jakarta" and changed["previousTimeZone"] == "UTC"
    assert changed["timeZoneSince"] == "2026-12-05T00:00:00.000Z"
    back = client.patch(f"/admin/orgs/{org_id}", json={"timeZone": "UTC"}, headers=admin).json["data"]
    assert back["timeZone"] == "UTC" and back["previousTimeZone"] is None  # nothing changes after all


@pytest.mark.parametrize("zone", ["Asia/Kolkata", "Pacific/Chatham", "America/New_York"])
def test_the_widest_range_in_any_zone_is_answered(app, client, admin, zone):
    user = create_user(app, "dev@example.com")
    insert_records(app, [usage_record(user, utc(2026, 12, 3, 10))])
    query = {"startDate": "0001-01-01", "endDate": "9999-12-31", "timeZone": zone}
    for source in ("rollup", "raw"):
        dashboard = client.get("/admin/openai/dashboard", query_string={**query, "source": source}, headers=admin)
        assert dashboard.status_code == 200 and dashboard.json["data"]["totalRequests"] == 1
    export = client.get("/admin/openai/export", query_string={**query, "format": "ndjson"}, headers=admin)
    assert len(export.get_data(as_text=True).strip().splitlines()) == 1


@pytest.mark.parametrize("name", ["localtime", "posixrules", "Factory", "right/UTC", "posix/Asia/Jakarta", "UTC\x00"])
def test_names_that_are_no_places_zone_are_refused(client, admin, name):
    assert client.get("/admin/openai/dashboard", query_string={"timeZone": name}, headers=admin).status_code == 422
    assert client.post("/admin/orgs", json={"name": "Odd", "timeZone": name}, headers=admin).status_code == 422


def test_a_day_of_a_historical_offset_is_read_from_the_ledger_and_the_rest_from_the_rollups(app, client, admin):
    # Monrovia kept -0:44:30 until 1972: local midnights then fell inside a quarter hour.
    user = create_user(app, "dev@example.com")
    insert_records(app, [usage_record(user, utc(1971, 6, 1, 12)), usage_record(user, utc(1971, 6, 1, 23, 50)),
                         usage_record(user, utc(2026, 12, 3, 10))])
    for view in ("/admin/openai/dashboard", "/admin/openai/timeseries"):
        query = {"startDate": "1971-06-01", "endDate": "2026-12-31", "timeZone": "Africa/Monrovia"}
        if view.endswith("timeseries"):
            query = {**query, "bucket": "month"}
        rollup = client.get(view, query_string=query, headers=admin).json["data"]
        raw = client.get(view, query_string={**query, "source": "raw"}, headers=admin).json["data"]
        assert without_projection(rollup) == without_projection(raw)
    # 23:50 UTC on 1 June 1971 was 23:05:30 in Monrovia: the same local day as noon.
    series = client.get("/admin/openai/timeseries", query_string={
        "startDate": "1971-06-01", "endDate": "1971-06-02", "timeZone": "Africa/Monrovia"}, headers=admin).json
    assert [p["totalRequests"] for p in series["data"]["series"][0]["points"]] == [2, 0]
