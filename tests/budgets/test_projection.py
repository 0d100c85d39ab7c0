"""Where the month is heading (issue 27): the documented method, worked out by hand, on the
dashboard, /api/me/usage and in the budget alert that names the expected day."""
from datetime import timedelta

import pytest

from backend.budgets.services import queue_projected_crossings
from backend.db import ALERTS, get_db
from tests.helpers import bearer, create_user, insert_records, usage_record, utc
from tests.orgs.support import member

NOW = utc(2026, 12, 10, 10)  # 17:00 on 10 December in Jakarta (UTC+7)


@pytest.fixture
def jakarta(make_app):
    app = make_app(CLOCK=lambda: NOW)
    client = app.test_client()
    create_user(app, "root@example.com", role="admin")
    root = bearer(client, "root@example.com")
    org_id = client.post("/admin/orgs", json={"name": "Jakarta QA", "timeZone": "Asia/Jakarta"},
                         headers=root).json["data"]["id"]
    dev, headers = member(app, client, root, org_id, "dev@example.com")
    _, boss = member(app, client, root, org_id, "boss@example.com", role="admin")
    # 1,000 tokens at noon (05:00 UTC) on each local day from 1 to 9 December, and one call of
    # November's last local day (30 November, 04:00 UTC) that the month must not count.
    calls = [usage_record(dev, utc(2026, 12, day, 5), prompt=600, completion=400, cost=0.001, org_id=org_id)
             for day in range(1, 10)]
    calls.append(usage_record(dev, utc(2026, 11, 30, 4), prompt=600, completion=400, cost=0.001, org_id=org_id))
    insert_records(app, calls)
    return app, client, root, org_id, headers, boss


# The month so far: 9 days x 1,000 = 9,000 tokens ($0.009). The last 7 whole local days (3-9
# December): 7,000, so 1,000 a day ($0.001). Days left: from 10 Dec 10:00 UTC to the local month's
# end, 31 Dec 17:00 UTC = 21 days 7 hours = 21.291667 days. Projected: 9,000 + 21,291.67 = 30,292.
EXPECTED = {"month": "2026-12", "timeZone": "Asia/Jakarta", "monthEnd": "2026-12-31T17:00:00.000Z",
            "monthToDate": {"tokens": 9000, "cost": 0.009}, "dailyAverage": {"tokens": 1000.0, "cost": 0.001},
            "daysLeft": 21.2917, "projected": {"tokens": 30292, "cost": 0.0302916667}}


def test_the_projection_follows_the_documented_method(jakarta):
    app, client, root, org_id, headers, boss = jakarta
    mine = client.get("/api/me/usage", headers=headers).json
    projection = mine["data"]["projection"]
    assert {key: projection[key] for key in EXPECTED} == EXPECTED and mine["timeZone"] == "Asia/Jakarta"
    assert "last 7 whole local days" in projection["method"]
    dashboard = client.get("/admin/openai/dashboard", headers=boss).json["data"]["projection"]
    assert {key: dashboard[key] for key in EXPECTED} == EXPECTED
    # A platform admin sees UTC's month unless they name the organization.
    platform = client.get("/admin/openai/dashboard", query_string={"orgId": org_id}, headers=root).json
    assert platform["data"]["projection"]["projected"] == EXPECTED["projected"]


def test_a_monthly_limit_projected_to_be_crossed_is_alerted_once_naming_the_day(jakarta):
    app, client, root, org_id, headers, boss = jakarta
    assert client.put(f"/admin/openai/budgets/org/{org_id}", json={"tokensPerMonth": 18000},
                      headers=root).status_code == 200
    with app.app_context():
        db = get_db()
        # (18,000 - 9,000) / 1,000 a day = 9 days after now: 19 Dec 10:00 UTC, 17:00 in Jakarta.
        assert queue_projected_crossings(db, NOW) == 1
        assert queue_projected_crossings(db, NOW + timedelta(minutes=10)) == 0  # once per month and unit
        [alert] = list(db[ALERTS].find({"payload.alert.kind": "projection"}))
    assert alert["payload"]["text"] == ("TokenLedger: at this pace Jakarta QA reaches its monthly tokens limit on "
                                        "19 December (Asia/Jakarta): 30292 projected for 2026-12 against a limit of "
                                        "18000.")
    assert alert["payload"]["alert"]["expectedDay"] == "2026-12-19"


def test_no_projection_alert_when_the_pace_stays_under_the_limit(jakarta):
    app, client, root, org_id, headers, boss = jakarta
    client.put(f"/admin/openai/budgets/org/{org_id}", json={"tokensPerMonth": 31000}, headers=root)
    with app.app_context():
        assert queue_projected_crossings(get_db(), NOW) == 0
