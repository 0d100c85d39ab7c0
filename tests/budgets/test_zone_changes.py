"""Zone changes an outside attack tried (issue 27): a second change (or the same zone set again)
keeps the windows already drawn, a batch settles each call in its own local day, windows a change
reshaped never share a key with whole UTC ones, and threshold alerts are per window."""
from backend.db import ALERTS, BUDGET_COUNTERS, USAGE, get_db
from backend.runtime import runtime
from tests.budgets.support import MAX_OUTPUT, build, generate, provider_reporting, worst_case_tokens
from tests.helpers import Clock, bearer, create_user, utc
from tests.orgs.support import member


def setup(make_app, clock, zone=None, daily=100, **overrides):
    per_call = worst_case_tokens()
    transport, _ = provider_reporting(per_call - MAX_OUTPUT, completion=overrides.pop("completion", MAX_OUTPUT))
    app = build(make_app, transport, CLOCK=clock, **overrides)
    client = app.test_client()
    create_user(app, "root@example.com", role="admin")
    root = bearer(client, "root@example.com")
    body = {"name": "Ops", **({"timeZone": zone} if zone else {})}
    org = client.post("/admin/orgs", json=body, headers=root).json["data"]["id"]
    user, headers = member(app, client, root, org, "dev@example.com")
    assert client.put(f"/admin/openai/budgets/{user['_id']}", json={"tokensPerDay": daily * per_call},
                      headers=root).status_code == 200
    return app, client, root, org, user, headers, per_call


def windows(client, headers):
    return {w["window"]: w for w in client.get("/api/me/usage", headers=headers).json["data"]["windows"]}


def test_setting_the_same_zone_again_keeps_the_windows_under_way(make_app):
    clock = Clock(utc(2026, 11, 30, 20))
    app, client, root, org, user, headers, per_call = setup(make_app, clock)
    assert generate(client, headers).status_code == 200  # 30 Nov 20:00 UTC: UTC November
    clock.at = utc(2026, 12, 4, 10)
    assert client.patch(f"/admin/orgs/{org}", json={"timeZone": "Asia/Jakarta"}, headers=root).status_code == 200
    clock.at = utc(2026, 12, 4, 20)
    assert generate(client, headers).status_code == 200  # the UTC day of the 4th
    clock.at = utc(2026, 12, 5, 3)
    assert generate(client, headers).status_code == 200  # the cut Jakarta day [5th 00:00, 17:00 UTC)
    clock.at = utc(2026, 12, 5, 4)
    assert client.patch(f"/admin/orgs/{org}", json={"timeZone": "Asia/Jakarta"}, headers=root).status_code == 200
    assert generate(client, headers).status_code == 200
    after = windows(client, headers)
    assert (after["day"]["startsAt"], after["day"]["used"]["tokens"]) == ("2026-12-05T00:00:00.000Z", 2 * per_call)
    assert (after["month"]["startsAt"], after["month"]["used"]["tokens"]) == ("2026-12-01T00:00:00.000Z",
                                                                             3 * per_call)


def test_a_second_change_keeps_the_first_ones_cut_day(make_app):
    clock = Clock(utc(2026, 12, 4, 10))
    app, client, root, org, user, headers, per_call = setup(make_app, clock)
    assert client.patch(f"/admin/orgs/{org}", json={"timeZone": "Asia/Jakarta"}, headers=root).status_code == 200
    clock.at = utc(2026, 12, 4, 20)
    assert generate(client, headers).status_code == 200  # the UTC day of the 4th
    clock.at = utc(2026, 12, 5, 3)
    changed = client.patch(f"/admin/orgs/{org}", json={"timeZone": "Asia/Tokyo"}, headers=root).json["data"]
    assert (changed["previousTimeZone"], changed["timeZoneSince"]) == ("Asia/Jakarta", "2026-12-05T17:00:00.000Z")
    day = windows(client, headers)["day"]
    assert (day["startsAt"], day["resetsAt"], day["used"]["tokens"]) == (
        "2026-12-05T00:00:00.000Z", "2026-12-05T17:00:00.000Z", 0)
    clock.at = utc(2026, 12, 5, 18)  # Tokyo from Jakarta's midnight: a cut day to Tokyo's, 15:00 UTC
    day = windows(client, headers)["day"]
    assert (day["timeZone"], day["startsAt"], day["resetsAt"]) == (
        "Asia/Tokyo", "2026-12-05T17:00:00.000Z", "2026-12-06T15:00:00.000Z")


def test_one_batch_settles_each_call_in_its_own_local_day(make_app):
    clock = Clock(utc(2026, 12, 4, 16, 59, 59))  # 23:59:59 on the 4th in Jakarta
    app, client, root, org, user, headers, per_call = setup(
        make_app, clock, zone="Asia/Jakarta", daily=10, completion=10, LEDGER_WRITES="async",
        LEDGER_WRITE_INTERVAL_MS=60_000)
    actual = per_call - MAX_OUTPUT + 10  # the provider billed less than the worst case reserved
    assert generate(client, headers).status_code == 200
    clock.at = utc(2026, 12, 4, 17, 0, 1)  # 00:00:01 on the 5th in Jakarta, the same UTC date
    assert generate(client, headers).status_code == 200
    runtime(app).writer._drain()  # one batch
    with app.app_context():
        counters = {c["_id"]: c["tokens"] for c in get_db()[BUDGET_COUNTERS].find({"owner": str(user["_id"])})}
        assert get_db()[USAGE].count_documents({"userId": user["_id"]}) == 2
    uid = str(user["_id"])
    assert counters[f"{uid}|day|2026-12-04|Asia/Jakarta|2026-12-03T17:00Z"] == actual
    assert counters[f"{uid}|day|2026-12-05|Asia/Jakarta|2026-12-04T17:00Z"] == actual


def test_a_month_a_change_reshaped_never_shares_a_whole_utc_months_counter(make_app):
    clock = Clock(utc(2026, 12, 10))
    app, client, root, org, user, headers, per_call = setup(make_app, clock)
    assert client.patch(f"/admin/orgs/{org}", json={"timeZone": "America/Los_Angeles"},
                        headers=root).status_code == 200
    assert generate(client, headers).status_code == 200  # 10 Dec: the UTC day under way
    clock.at = utc(2027, 1, 1, 1)  # 31 Dec 17:00 in Los Angeles: still its December
    assert generate(client, headers).status_code == 200
    with app.app_context():
        get_db()[BUDGET_COUNTERS].delete_many({})  # counters open again from the ledger
    month = windows(client, headers)["month"]
    assert (month["startsAt"], month["resetsAt"]) == ("2026-12-01T00:00:00.000Z", "2027-01-01T08:00:00.000Z")
    assert month["used"]["tokens"] == 2 * per_call


def test_threshold_alerts_are_per_window_when_a_change_repeats_a_label(make_app):
    clock = Clock(utc(2026, 12, 4, 10))
    app, client, root, org, user, headers, per_call = setup(make_app, clock, daily=1)
    assert client.patch(f"/admin/orgs/{org}", json={"timeZone": "America/Los_Angeles"},
                        headers=root).status_code == 200
    assert generate(client, headers).status_code == 200  # 100% of the UTC day of the 4th
    clock.at = utc(2026, 12, 5, 1)  # 17:00 on the 4th in Los Angeles: a new (cut) window, also "2026-12-04"
    assert generate(client, headers).status_code == 200
    with app.app_context():
        alerts = sorted(a["_id"] for a in get_db()[ALERTS].find({"payload.alert.window": "day"}))
    uid = str(user["_id"])
    cut = f"{uid}|day|2026-12-04|America/Los_Angeles|2026-12-05T00:00Z"
    assert alerts == sorted([f"{uid}|day|2026-12-04|tokens|100", f"{uid}|day|2026-12-04|tokens|80",
                             f"{cut}|tokens|100", f"{cut}|tokens|80"])


def test_a_window_that_ends_in_the_new_zone_says_its_reset_in_that_zone(make_app):
    clock = Clock(utc(2026, 12, 4, 10))
    app, client, root, org, user, headers, per_call = setup(make_app, clock, zone="Asia/Jakarta")
    assert client.patch(f"/admin/orgs/{org}", json={"timeZone": "Asia/Kolkata"}, headers=root).status_code == 200
    month = windows(client, headers)["month"]
    # December began in Jakarta and goes on to Kolkata's month end: 18:30 UTC, midnight in Kolkata.
    assert (month["timeZone"], month["resetsAt"], month["resetsAtLocal"]) == (
        "Asia/Jakarta", "2026-12-31T18:30:00.000Z", "2027-01-01T00:00:00+05:30")
    # The day ends at Jakarta's midnight, when Kolkata takes over: 22:30 there (a cut day follows).
    day = windows(client, headers)["day"]
    assert (day["resetsAt"], day["resetsAtLocal"]) == ("2026-12-04T17:00:00.000Z", "2026-12-04T22:30:00+05:30")
