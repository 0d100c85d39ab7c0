"""Budget windows on the organization's local days and months (issue 27), with an injected clock."""
from datetime import timedelta

from backend.db import BUDGET_COUNTERS, USAGE, get_db
from tests.budgets.support import MAX_OUTPUT, build, generate, provider_reporting, worst_case_tokens
from tests.helpers import Clock, bearer, create_user, utc
from tests.orgs.support import member


def setup(make_app, clock):
    per_call = worst_case_tokens()
    transport, calls = provider_reporting(per_call - MAX_OUTPUT)
    app = build(make_app, transport, CLOCK=clock)
    client = app.test_client()
    create_user(app, "root@example.com", role="admin")
    root = bearer(client, "root@example.com")
    jakarta = client.post("/admin/orgs", json={"name": "Jakarta QA", "timeZone": "Asia/Jakarta"}, headers=root)
    london = client.post("/admin/orgs", json={"name": "London QA"}, headers=root)
    people = {}
    for name, org in (("jakarta", jakarta.json["data"]["id"]), ("utc", london.json["data"]["id"])):
        user, headers = member(app, client, root, org, f"{name}@example.com")
        assert client.put(f"/admin/openai/budgets/{user['_id']}", json={"tokensPerDay": per_call},
                          headers=root).status_code == 200
        people[name] = (user, headers)
    return app, client, root, people, per_call


def test_a_jakarta_members_day_restarts_at_17_utc_and_a_utc_members_does_not(make_app):
    clock = Clock(utc(2026, 12, 4, 9))
    app, client, root, people, per_call = setup(make_app, clock)
    for name in ("jakarta", "utc"):
        headers = people[name][1]
        assert generate(client, headers).status_code == 200
        refused = generate(client, headers)
        assert refused.status_code == 429
    # 09:00 UTC is 16:00 in Jakarta: its day ends at its midnight, 17:00 UTC.
    assert generate(client, people["jakarta"][1]).json["data"]["resetsAt"] == "2026-12-04T17:00:00.000Z"
    assert generate(client, people["utc"][1]).json["data"]["resetsAt"] == "2026-12-05T00:00:00.000Z"

    clock.at = utc(2026, 12, 4, 17)
    assert generate(client, people["jakarta"][1]).status_code == 200
    assert generate(client, people["utc"][1]).status_code == 429

    usage = client.get("/api/me/usage", headers=people["jakarta"][1]).json["data"]["windows"]
    day = next(window for window in usage if window["window"] == "day")
    assert day == {**day, "period": "2026-12-05", "timeZone": "Asia/Jakarta", "startsAt": "2026-12-04T17:00:00.000Z",
                   "resetsAt": "2026-12-05T17:00:00.000Z", "resetsAtLocal": "2026-12-06T00:00:00+07:00"}
    assert day["used"]["tokens"] == per_call  # the provider reported the worst case
    month = next(window for window in usage if window["window"] == "month")
    assert (month["period"], month["resetsAt"]) == ("2026-12", "2026-12-31T17:00:00.000Z")


def test_a_zone_change_waits_for_the_next_midnight_and_counts_every_call_once(make_app):
    clock = Clock(utc(2026, 12, 4, 10))
    app, client, root, people, per_call = setup(make_app, clock)
    user, headers = people["utc"]
    org_id = str(get_db(app).users.find_one({"_id": user["_id"]})["orgId"])
    client.put(f"/admin/openai/budgets/{user['_id']}", json={"tokensPerDay": 10 * per_call}, headers=root)
    assert generate(client, headers).status_code == 200  # 10:00 UTC, the UTC day of the 4th
    assert client.patch(f"/admin/orgs/{org_id}", json={"timeZone": "Asia/Jakarta"}, headers=root).status_code == 200

    clock.at = utc(2026, 12, 4, 20)  # still the UTC day: the change waits for its midnight
    assert generate(client, headers).status_code == 200
    windows = {w["window"]: w for w in client.get("/api/me/usage", headers=headers).json["data"]["windows"]}
    assert windows["day"]["timeZone"] == "UTC" and windows["day"]["resetsAt"] == "2026-12-05T00:00:00.000Z"
    assert windows["day"]["used"]["tokens"] == 2 * per_call

    clock.at = utc(2026, 12, 5, 3)  # after it: a Jakarta day that began at the UTC midnight, ends at 17:00
    assert generate(client, headers).status_code == 200
    windows = {w["window"]: w for w in client.get("/api/me/usage", headers=headers).json["data"]["windows"]}
    day = windows["day"]
    assert (day["timeZone"], day["period"], day["startsAt"], day["resetsAt"]) == (
        "Asia/Jakarta", "2026-12-05", "2026-12-05T00:00:00.000Z", "2026-12-05T17:00:00.000Z")
    assert day["used"]["tokens"] == per_call
    # The month goes on across the change (it began in UTC) to the end of Jakarta's December.
    month = windows["month"]
    assert (month["period"], month["startsAt"], month["resetsAt"]) == (
        "2026-12", "2026-12-01T00:00:00.000Z", "2026-12-31T17:00:00.000Z")
    assert month["used"]["tokens"] == 3 * per_call

    with app.app_context():
        counters = {c["_id"]: c["tokens"] for c in get_db()[BUDGET_COUNTERS].find({"owner": str(user["_id"])})}
        ledger = [r["totalTokens"] for r in get_db()[USAGE].find({"userId": user["_id"]})]
    # Every counter equals the ledger for its window: the UTC day of the 4th held two calls, the cut
    # Jakarta day one, the month all three. The change made December another window (it now ends at
    # Jakarta's month end): its counter opened at what the ledger held, and the whole-UTC-month
    # counter of before the change (the first call) is left as it was, read by nothing.
    assert counters == {f"{user['_id']}|day|2026-12-04": 2 * per_call,
                        f"{user['_id']}|day|2026-12-05|Asia/Jakarta|2026-12-05T00:00Z": per_call,
                        f"{user['_id']}|month|2026-12": per_call,
                        f"{user['_id']}|month|2026-12|UTC|2026-12-01T00:00Z": 3 * per_call}
    assert sum(ledger) == 3 * per_call

    clock.at = utc(2026, 12, 5, 17, 30)  # the first whole Jakarta day, the 6th
    assert generate(client, headers).status_code == 200
    day = next(w for w in client.get("/api/me/usage", headers=headers).json["data"]["windows"] if w["window"] == "day")
    assert (day["period"], day["startsAt"], day["used"]["tokens"]) == ("2026-12-06", "2026-12-05T17:00:00.000Z",
                                                                      per_call)


def test_a_counter_opened_late_in_a_local_day_starts_at_what_the_ledger_holds_for_it(make_app):
    clock = Clock(utc(2026, 12, 4, 18))
    app, client, root, people, per_call = setup(make_app, clock)
    user, headers = people["jakarta"]
    assert generate(client, headers).status_code == 200  # 01:00 on the 5th in Jakarta
    with app.app_context():
        get_db()[BUDGET_COUNTERS].delete_many({})  # as if they expired or were never made
    clock.at += timedelta(hours=1)
    refused = generate(client, headers)
    assert refused.status_code == 429 and refused.json["data"]["used"] == per_call
