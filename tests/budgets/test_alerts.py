"""Threshold alerts, delivered to a real webhook receiver on a loopback port."""
import json
import threading
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import mongomock
import pytest

from backend import background
from backend.alerts.services import dispatch_due, queue_crossings
from backend.db import ALERTS, get_db
from tests.budgets.support import build, generate, provider_reporting, worst_case_tokens
from tests.helpers import bearer, create_user


class Receiver:
    """A webhook endpoint on 127.0.0.1 that records every POST; the first `failures` answer 500."""

    def __init__(self, failures=0):
        self.posts = []
        self.failures = failures
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                receiver.posts.append({"body": body, "contentType": self.headers["Content-Type"]})
                status = 500 if len(receiver.posts) <= receiver.failures else 200
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server.server_port}/hook"

    def alerts(self):
        return [post["body"]["alert"] for post in self.posts]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.close()


def test_each_budget_threshold_is_posted_exactly_once(make_app, receiver):
    per_request = worst_case_tokens()
    transport, _ = provider_reporting(per_request - 200)
    store = mongomock.MongoClient(tz_aware=True)
    # Two instances on one store: both dispatch, neither sends an alert the other sent.
    apps = [build(make_app, transport, store, ALERT_WEBHOOK_URL=receiver.url) for _ in range(2)]
    user = create_user(apps[0], "dev@example.com")
    create_user(apps[0], "root@example.com", role="admin")
    client = apps[0].test_client()
    client.put(f"/admin/openai/budgets/{user['_id']}", json={"tokensPerDay": 5 * per_request},
               headers=bearer(client, "root@example.com"))
    headers = bearer(client, "dev@example.com")

    statuses = []
    for number in range(6):  # 20%, 40%, 60%, 80%, 100%, then refused
        statuses.append(generate(apps[number % 2].test_client(), headers).status_code)
        for app in apps:
            background.run_once(app)
    for app in apps:
        background.run_once(app)

    assert statuses == [200, 200, 200, 200, 200, 429]
    assert [(a["threshold"], a["used"], a["limit"]) for a in receiver.alerts()] == [
        (80, 4 * per_request, 5 * per_request), (100, 5 * per_request, 5 * per_request)]
    first = receiver.posts[0]
    assert first["contentType"] == "application/json"
    today = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    assert first["body"]["text"] == (f"TokenLedger: dev@example.com has used 80% of its day tokens budget "
                                     f"({4 * per_request} of {5 * per_request}) for {today}.")
    assert first["body"]["alert"] == {"subject": str(user["_id"]), "label": "dev@example.com", "window": "day",
                                      "period": today, "unit": "tokens", "threshold": 80,
                                      "used": 4 * per_request, "limit": 5 * per_request}
    with apps[0].app_context():
        assert sorted(a["status"] for a in get_db()[ALERTS].find()) == ["sent", "sent"]


def test_global_daily_spend_limit_alerts_once_per_threshold(make_app, receiver):
    call_usd = (1000 * 0.15 + 500 * 0.60) / 1e6
    transport, _ = provider_reporting(1000, 500)
    app = build(make_app, transport, ALERT_WEBHOOK_URL=receiver.url,
                GLOBAL_DAILY_SPEND_LIMIT_USD=Decimal(str(call_usd * 1.2)))
    client = app.test_client()
    for email in ("a@example.com", "b@example.com"):
        create_user(app, email)
    for email in ("a@example.com", "b@example.com", "a@example.com"):  # 83%, 167%, 250%
        assert generate(client, bearer(client, email)).status_code == 200
        background.run_once(app)

    alerts = receiver.alerts()
    assert [(a["subject"], a["threshold"], a["unit"]) for a in alerts] == [("global", 80, "usd"), ("global", 100, "usd")]
    assert alerts[0]["used"] == pytest.approx(call_usd) and alerts[1]["used"] == pytest.approx(2 * call_usd)
    assert "The whole service has used 80% of its day usd budget" in receiver.posts[0]["body"]["text"]


def test_a_failing_webhook_is_retried_with_backoff_until_it_answers(app):
    receiver = Receiver(failures=2)
    try:
        t0 = datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)
        with app.app_context():
            db = get_db()
            queued = queue_crossings(db, {"key": "u1", "label": "u1@example.com"}, "month", "2026-11", "usd",
                                     9.0, 10.0, [80, 100], t0)
            assert queued == ["u1|month|2026-11|usd|80"]
            assert dispatch_due(db, receiver.url, 8, t0) == 0  # attempt 1: 500, next try at +2 s
            assert dispatch_due(db, receiver.url, 8, t0 + timedelta(seconds=1)) == 0  # not due yet
            assert len(receiver.posts) == 1
            assert dispatch_due(db, receiver.url, 8, t0 + timedelta(seconds=2)) == 0  # attempt 2: 500, +4 s
            assert dispatch_due(db, receiver.url, 8, t0 + timedelta(seconds=5)) == 0
            assert dispatch_due(db, receiver.url, 8, t0 + timedelta(seconds=6)) == 1  # attempt 3: delivered
            assert dispatch_due(db, receiver.url, 8, t0 + timedelta(hours=2)) == 0
            alert = db[ALERTS].find_one()
            assert (alert["status"], alert["attempts"], len(receiver.posts)) == ("sent", 2, 3)
            assert "500" in alert["lastError"]
    finally:
        receiver.close()


def test_an_alert_gives_up_after_the_most_attempts(app):
    receiver = Receiver(failures=100)
    try:
        t0 = datetime(2026, 11, 23, tzinfo=timezone.utc)
        with app.app_context():
            db = get_db()
            queue_crossings(db, {"key": "u1", "label": "u1"}, "day", "2026-11-23", "tokens", 100, 100, [100], t0)
            for seconds in (0, 2, 6):
                dispatch_due(db, receiver.url, 3, t0 + timedelta(seconds=seconds))
            dispatch_due(db, receiver.url, 3, t0 + timedelta(days=1))
            alert = db[ALERTS].find_one()
            assert (alert["status"], alert["attempts"], len(receiver.posts)) == ("failed", 3, 3)
    finally:
        receiver.close()


def test_crossing_is_queued_once_and_only_at_its_threshold(app):
    now = datetime(2026, 11, 23, tzinfo=timezone.utc)
    subject = {"key": "u1", "label": "u1"}
    with app.app_context():
        db = get_db()
        assert queue_crossings(db, subject, "day", "2026-11-23", "tokens", 79, 100, [80, 100], now) == []
        assert queue_crossings(db, subject, "day", "2026-11-23", "tokens", 80, 100, [80, 100], now) == [
            "u1|day|2026-11-23|tokens|80"]
        assert queue_crossings(db, subject, "day", "2026-11-23", "tokens", 95, 100, [80, 100], now) == []
        assert queue_crossings(db, subject, "day", "2026-11-24", "tokens", 95, 100, [80, 100], now) == [
            "u1|day|2026-11-24|tokens|80"]
        assert db[ALERTS].count_documents({}) == 2


def test_alerts_wait_in_the_queue_without_a_webhook(make_app):
    per_request = worst_case_tokens()
    transport, _ = provider_reporting(per_request - 200)
    app = build(make_app, transport)
    user = create_user(app, "dev@example.com")
    create_user(app, "root@example.com", role="admin")
    client = app.test_client()
    client.put(f"/admin/openai/budgets/{user['_id']}", json={"tokensPerDay": per_request},
               headers=bearer(client, "root@example.com"))
    assert generate(client, bearer(client, "dev@example.com")).status_code == 200
    background.run_once(app)
    with app.app_context():
        assert sorted(a["_id"].rsplit("|", 1)[1] for a in get_db()[ALERTS].find({"status": "pending"})) == ["100", "80"]
