"""The admin page in headless Chromium (Debian's `chromium`, driven by Playwright) against the
real app on a loopback port, with seeded usage. Expected figures are summed here from the
seeded records and compared with both the dashboard API and what the page shows. A second
app (`org_site`) has two organizations: an organization admin sees only theirs, a platform
admin chooses one.

Screenshots of the main views at 1280px and 390px go to docs/screenshots/ (with UPDATE_SCREENSHOTS=1).
"""
import csv
import math
import os
import random
import shutil
import tempfile
import threading
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from bson import ObjectId
from werkzeug.serving import make_server

from backend import create_app
from backend.db import get_db
from backend.orgs.repository import DEFAULT_ORG_ID
from backend.pricing.services import COST_DECIMALS
from backend.reconciliation import services as reconciliation
from tests.helpers import PASSWORD, SETTINGS, TEST_SECRET, bearer, create_user, insert_records, usage_record
from tests.orgs.support import make_org, make_team, member
from tests.reconciliation.fakes import UsageReportServer, openai_page, openai_result

sync_api = pytest.importorskip("playwright.sync_api")

# The README's screenshots are refreshed only when asked (UPDATE_SCREENSHOTS=1), so a test run
# leaves the working tree as it found it; otherwise they are taken all the same, into a temp dir.
SCREENSHOTS = (Path(__file__).resolve().parents[2] / "docs" / "screenshots" if os.environ.get("UPDATE_SCREENSHOTS")
               else Path(tempfile.gettempdir()) / "tokenledger-screenshots")
CHROMIUM_ARGS = ["--headless=new", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
PREFIX = "e2e-"


def chromium_path():
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        message = "Debian's chromium is not installed (make test installs it when run as root)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def seeded_records(users, today):
    """alice: 23 calls over the last 21 days (so her history has 3 pages of 10); bob: gemini
    test cases; carol: two weeks back; dave: only 40 days back, outside every preset."""
    rng = random.Random(20261123)
    alice, bob, carol, dave = users
    records = []

    def add(user, days_back, provider, model, operation, outcome="ok"):
        at = datetime.combine(today - timedelta(days=days_back), datetime.min.time(), tzinfo=timezone.utc)
        at += timedelta(seconds=rng.randrange(6 * 3600, 18 * 3600))
        prompt, completion = rng.randint(800, 4000), rng.randint(200, 1500)
        cost = round(prompt * 0.15e-6 + completion * 0.6e-6, 10)
        records.append(usage_record(user, at, prompt, completion, cost, model=model, provider=provider,
                                    operation=operation, outcome=outcome))

    for i in range(23):
        add(alice, i % 21, "openai", rng.choice(["gpt-4o-mini", "gpt-4.1"]),
            "test_generation" if i % 3 else "testcase_generation")
    for days_back in (0, 2, 5, 9, 12):
        add(bob, days_back, "gemini", "gemini-2.5-flash", "testcase_generation")
    for days_back, outcome in ((14, "unreadable"), (15, "ok"), (16, "client_gone")):
        add(carol, days_back, "anthropic", "claude-haiku-4-5", "test_generation", outcome)
    for _ in range(2):
        add(dave, 40, "openai", "gpt-4o-mini", "test_generation")
    return records


def e2e_app(tmp_path_factory, **config):
    """The app as the service runs it (demo provider), with no setting from the environment."""
    with pytest.MonkeyPatch.context() as patch:
        for name in SETTINGS:
            patch.delenv(name, raising=False)
        return create_app({
            "TESTING": True, "JWT_SECRET_KEY": TEST_SECRET, "LLM_PROVIDER": "demo", "LLM_PROVIDERS": ["demo"],
            "RATELIMIT_ENABLED": False, "BACKGROUND_TASKS": False,
            "SPOOL_PATH": str(tmp_path_factory.mktemp("spool") / "spool.jsonl"), **config,
        })


@contextmanager
def served(app):
    """The app on a loopback port in a thread while the block runs; yields its URL."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(5)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The real app served on a loopback port in a thread, with seeded users and usage; OpenAI's
    usage report is a fake at the transport (`openai_report`) for the reconciliation tab."""
    openai_report = UsageReportServer()
    app = e2e_app(tmp_path_factory, OPENAI_ADMIN_KEY="sk-admin-e2e",
                  RECONCILE_TRANSPORTS={"openai": openai_report.transport})
    create_user(app, "admin@example.com", role="admin")
    create_user(app, "viewer@example.com")
    users = [create_user(app, f"{name}@example.com") for name in ("alice", "bob", "carol", "dave")]
    today = datetime.now(timezone.utc).date()
    records = seeded_records(users, today)
    insert_records(app, records)
    client = app.test_client()
    with served(app) as url:
        yield {"url": url, "records": records, "users": users, "today": today, "api": client,
               "headers": bearer(client, "admin@example.com"), "app": app, "openai_report": openai_report}


@pytest.fixture(scope="module")
def browser():
    executable = chromium_path()
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


class Page:
    """One browser tab that fails the test on any console error or uncaught exception."""

    def __init__(self, browser, site, width, height, timezone_id="America/New_York", allowed=()):
        self.context = browser.new_context(viewport={"width": width, "height": height}, accept_downloads=True,
                                           timezone_id=timezone_id, locale="en-US")
        self.page = self.context.new_page()
        self.width = width
        self.errors = []
        self.page.on("console", lambda message: message.type == "error" and not any(
            text in message.text for text in allowed) and self.errors.append(message.text))
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.page.goto(f"{site['url']}/admin/")

    def login(self, email, password=PASSWORD):
        self.page.fill("#login-email", email)
        self.page.fill("#login-password", password)
        self.page.click("#login-submit")

    def settle(self, panel="#dashboard-view"):
        """Wait for the panel's loads to finish (clicks set it to "loading" synchronously)."""
        self.page.wait_for_selector(f'{panel}[data-state="ready"]', timeout=15000)

    def text(self, selector):
        return self.page.locator(selector).inner_text().strip()

    def cards(self):
        return [self.text(f"#card-{name}") for name in ("tokens", "cost", "requests", "users")]

    def shot(self, name):
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(SCREENSHOTS / f"{name}-{self.width}.png"), full_page=True)

    def close(self):
        self.context.close()
        assert self.errors == [], f"console errors: {self.errors}"


def usd(value):
    """The page's rule: cents from $1 up, else 4 (or 6 under a cent) decimals; thousands separated.
    The API gives costs to 10 decimals; Intl.NumberFormat rounds the number's shortest decimal
    form half away from zero (0.0067845 shows as $0.006785)."""
    value = round(value, COST_DECIMALS)
    digits = 2 if value == 0 or abs(value) >= 1 else 4 if abs(value) >= 0.01 else 6
    return f"${Decimal(repr(value)).quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_UP):,}"


def chosen(site, days, operation=None, provider=None):
    first = (site["today"] - timedelta(days=days - 1)).isoformat()
    return [r for r in site["records"] if first <= r["date"] <= site["today"].isoformat()
            and operation in (None, r["operation"]) and provider in (None, r["provider"])]


def expected_cards(records):
    return [f"{sum(r['totalTokens'] for r in records):,}", usd(math.fsum(r["cost"] for r in records)),
            f"{len(records):,}", f"{len({r['userId'] for r in records}):,}"]


def api_cards(site, days, **filters):
    query = {"startDate": (site["today"] - timedelta(days=days - 1)).isoformat(),
             "endDate": site["today"].isoformat(), **filters}
    data = site["api"].get("/admin/openai/dashboard", query_string=query, headers=site["headers"]).json["data"]
    return [f"{data['totalTokens']:,}", usd(data["totalCost"]), f"{data['totalRequests']:,}",
            f"{data['uniqueUsers']:,}"]


def export_csv(page):
    """Click Export CSV: (the file's suggested name, its rows as dicts)."""
    with page.expect_download() as download_info:
        page.click("#export-csv")
    download = download_info.value
    with open(download.path(), newline="") as handle:
        return download.suggested_filename, list(csv.DictReader(handle))


def test_admin_dashboard_end_to_end(site, browser):
    tab = Page(browser, site, 1280, 900)
    page = tab.page
    tab.shot("login")
    assert page.context.cookies() == []
    tab.login("admin@example.com")
    tab.settle()
    assert page.evaluate("sessionStorage.getItem('tokenledger.accessToken')")
    assert page.context.cookies() == [], "the token must never sit in a cookie"

    # 30 days (the default): the cards equal the API, which equals the seeded sums.
    thirty = chosen(site, 30)
    assert api_cards(site, 30) == expected_cards(thirty)
    assert tab.cards() == expected_cards(thirty)
    failed = [r for r in thirty if r["outcome"] != "ok"]
    assert len(failed) == 2 and tab.text("#failed-note") == (
        f"Of these, {len(failed)} calls of failed requests cost {usd(math.fsum(r['cost'] for r in failed))} "
        "(billed all the same).")
    assert page.locator("#chart svg rect").count() > 0
    assert page.locator("#top-users-table tbody tr").count() == 3  # dave is outside the range
    model_rows = page.locator("#breakdown-table tbody tr")
    assert sorted(model_rows.nth(i).locator("td").first.inner_text() for i in range(model_rows.count())) == sorted(
        {r["modelName"] for r in thirty})
    tab.shot("dashboard")

    # An operation tab, chosen with the keyboard: the figures change to that operation's.
    operation_tab = page.locator('#operation-tabs button[data-operation="testcase_generation"]')
    operation_tab.focus()
    page.keyboard.press("Enter")
    tab.settle()
    only_cases = chosen(site, 30, operation="testcase_generation")
    assert api_cards(site, 30, operation="testcase_generation") == expected_cards(only_cases)
    assert tab.cards() == expected_cards(only_cases) != expected_cards(thirty)
    assert operation_tab.get_attribute("aria-pressed") == "true"
    assert page.evaluate("document.activeElement.dataset.operation") == "testcase_generation"

    # A date range preset on top of the tab.
    page.click('button[data-preset="7d"]')
    tab.settle()
    week_cases = chosen(site, 7, operation="testcase_generation")
    assert tab.cards() == api_cards(site, 7, operation="testcase_generation") == expected_cards(week_cases)
    assert tab.cards() != expected_cards(only_cases)

    # A provider filter.
    page.click('#operation-tabs button[data-operation=""]')
    tab.settle()
    page.select_option("#provider-filter", "gemini")
    tab.settle()
    assert tab.cards() == api_cards(site, 7, provider="gemini") == expected_cards(chosen(site, 7, provider="gemini"))

    # CSV export of the current filter (7 days, gemini): the rows are those records.
    filename, rows = export_csv(page)
    assert filename.endswith(".csv")
    wanted = chosen(site, 7, provider="gemini")
    assert sorted(row["callId"] for row in rows) == sorted(r["callId"] for r in wanted)
    by_call = {r["callId"]: r for r in wanted}
    for row in rows:
        record = by_call[row["callId"]]
        assert (int(row["promptTokens"]), int(row["completionTokens"]), int(row["totalTokens"]), row["provider"],
                row["userEmail"]) == (record["promptTokens"], record["completionTokens"], record["totalTokens"],
                                      "gemini", "bob@example.com")

    # Back to everything over 30 days; open the heaviest user and page through the history.
    page.select_option("#provider-filter", "")
    tab.settle()
    page.click('button[data-preset="30d"]')
    tab.settle()
    page.click('#top-users-table button:has-text("alice@example.com")')
    tab.settle("#user-panel")
    alice = [r for r in thirty if r["userEmail"] == "alice@example.com"]
    assert tab.text("#user-title") == "alice@example.com"
    assert tab.text("#user-tokens") == f"{sum(r['totalTokens'] for r in alice):,}"
    assert tab.text("#user-requests") == f"{len(alice):,}"
    newest_first = sorted(alice, key=lambda r: (r["timestamp"], r["_id"]), reverse=True)

    def history_times():
        cells = page.locator("#history-table tbody time")
        return [cells.nth(i).get_attribute("title") for i in range(cells.count())]

    def utc_title(record):
        return record["timestamp"].strftime("%Y-%m-%dT%H:%M:%S.") + f"{record['timestamp'].microsecond // 1000:03d}Z (UTC)"

    assert tab.text("#history-page") == f"Page 1 of 3 · {len(alice)} calls"
    # Times are in the view's zone (all organizations: UTC), named; the UTC instant is in the title.
    assert tab.text("#tz-note").startswith("Times shown in UTC")
    newest = newest_first[0]["timestamp"].astimezone(ZoneInfo("UTC"))
    shown = tab.text("#history-table tbody tr:first-child time")
    assert newest.strftime("%b %-d, %Y") in shown and f"{newest.hour % 12 or 12}:{newest:%M:%S}" in shown
    assert history_times() == [utc_title(r) for r in newest_first[:10]]
    assert page.locator("#history-prev").is_disabled()
    tab.shot("user")
    page.click("#history-next")
    tab.settle("#user-panel")
    assert tab.text("#history-page") == f"Page 2 of 3 · {len(alice)} calls"
    assert history_times() == [utc_title(r) for r in newest_first[10:20]]
    page.click("#history-next")
    tab.settle("#user-panel")
    assert history_times() == [utc_title(r) for r in newest_first[20:]]
    assert page.locator("#history-next").is_disabled()

    # An empty range says so, helpfully.
    page.click('button[data-preset="custom"]')
    page.fill("#custom-start", "2020-01-01")
    page.fill("#custom-end", "2020-01-31")
    page.click('#custom-range button[type="submit"]')
    tab.settle()
    assert tab.cards() == ["0", "$0.00", "0", "0"]
    assert "No usage recorded for this range" in tab.text("#chart")
    assert "No usage recorded for this range" in tab.text("#top-users-table tbody")

    # Everything on the page is reachable with Tab.
    page.locator("#logout").focus()
    for _ in range(60):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "export-csv":
            break
    else:
        pytest.fail("Export CSV is not reachable with the keyboard")

    page.click("#logout")
    assert page.locator("#login-view").is_visible()
    assert page.evaluate("sessionStorage.getItem('tokenledger.accessToken')") is None
    tab.close()


def test_narrow_screen_has_no_sideways_scroll(site, browser):
    tab = Page(browser, site, 390, 844)
    page = tab.page
    tab.shot("login")
    tab.login("admin@example.com")
    tab.settle()
    assert tab.cards() == expected_cards(chosen(site, 30))
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    tab.shot("dashboard")
    page.click('#top-users-table button:has-text("alice@example.com")')
    tab.settle("#user-panel")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    tab.shot("user")
    tab.close()


def test_an_admin_reaches_their_own_usage_from_the_header(site, browser):
    tab = Page(browser, site, 1280, 900)
    page = tab.page
    tab.login("admin@example.com")
    tab.settle()
    link = page.locator("#me-link")
    assert link.is_visible() and link.inner_text() == "My usage"
    # The page shares the tab's session: no second sign-in.
    link.click()
    page.wait_for_url("**/me/")
    page.locator("#usage-view").wait_for(state="visible")
    assert page.locator("#login-view").is_hidden()
    tab.close()


def test_a_non_admin_sees_a_clear_refusal(site, browser):
    tab = Page(browser, site, 1280, 900)
    page = tab.page
    tab.login("viewer@example.com")
    error = page.locator("#login-error")
    error.wait_for(state="visible")
    assert "not an admin of the platform or of an organization" in error.inner_text()
    assert "My usage page (/me/)" in error.inner_text()
    assert page.locator("#dashboard-view").is_hidden()
    assert page.evaluate("sessionStorage.getItem('tokenledger.accessToken')") is None
    tab.close()


def test_api_errors_and_an_expired_session_are_explained(site, browser):
    # The browser logs each 4xx answer as "Failed to load resource"; those are expected here.
    tab = Page(browser, site, 1280, 900, allowed=("Failed to load resource",))
    page = tab.page
    tab.login("admin@example.com")
    tab.settle()
    page.click('button[data-preset="custom"]')
    page.fill("#custom-start", "2020-01-01")
    page.fill("#custom-end", "2026-11-01")
    page.click('#custom-range button[type="submit"]')
    tab.settle()
    assert tab.text("#alert") == "The range is too long for day buckets (endDate: Too far.)"
    page.fill("#custom-start", "2026-02-01")
    page.fill("#custom-end", "2026-01-01")
    page.click('#custom-range button[type="submit"]')
    assert tab.text("#alert") == "The start date must not be after the end date."

    page.evaluate("sessionStorage.setItem('tokenledger.accessToken', 'not-a-token')")
    page.reload()
    page.locator("#login-view").wait_for(state="visible")
    assert tab.text("#alert") == "Your session has expired. Please sign in again."
    assert page.evaluate("sessionStorage.getItem('tokenledger.accessToken')") is None
    tab.close()


def reconcile_openai_day(site, day, extra_call=None):
    """Reconcile `day` against a report built here from the seeded openai records of that day (plus
    an `extra_call` (model, input, output) the ledger never recorded)."""
    sums = {}
    for record in site["records"]:
        if record["provider"] == "openai" and record["date"] == day.isoformat():
            model = sums.setdefault(record["modelName"], [0, 0, 0])
            model[0] += 1
            model[1] += record["promptTokens"]
            model[2] += record["completionTokens"]
    if extra_call:
        model = sums.setdefault(extra_call[0], [0, 0, 0])
        model[0], model[1], model[2] = model[0] + 1, model[1] + extra_call[1], model[2] + extra_call[2]
    start = int(datetime.combine(day, datetime.min.time(), tzinfo=timezone.utc).timestamp())
    site["openai_report"].pages = [openai_page(start, [openai_result(name, prompt, output, 0, requests)])
                                   for name, (requests, prompt, output) in sorted(sums.items())]
    now = datetime.combine(site["today"], datetime.min.time(), tzinfo=timezone.utc)
    with site["app"].app_context():
        reconciliation.reconcile_day(get_db(site["app"]), site["app"].config, day, now)
    return sums


def test_reconciliation_tab_lists_mismatches_first_with_a_model_drill_down(site, browser):
    short_day, match_day = site["today"] - timedelta(days=1), site["today"] - timedelta(days=2)
    short_sums = reconcile_openai_day(site, short_day, extra_call=("gpt-4o-mini", 1000, 100))
    reconcile_openai_day(site, match_day)

    tab = Page(browser, site, 1280, 900)
    page = tab.page
    tab.login("admin@example.com")
    tab.settle()
    page.click('.view-tab[data-view="reconciliation"]')
    tab.settle("#reconciliation-view")
    assert page.locator("#cards").is_hidden() and page.locator("#export-csv").is_hidden()

    rows = page.locator("#reconciliation-table > tbody > tr:not(.drill)")
    shown = [(rows.nth(i).get_attribute("data-date"), rows.nth(i).get_attribute("data-provider"),
              rows.nth(i).locator(".verdict").inner_text()) for i in range(rows.count())]
    # Mismatches first; then matches; then not supported, newest day first, then by provider
    # (demo is the enabled provider; bob's gemini records fall on match_day, two days back).
    assert shown == [(short_day.isoformat(), "openai", "ledger short"), (match_day.isoformat(), "openai", "match"),
                     (short_day.isoformat(), "demo", "not supported"), (match_day.isoformat(), "demo", "not supported"),
                     (match_day.isoformat(), "gemini", "not supported")]
    assert tab.text("#reconciliation-summary") == "1 mismatch, 0 unavailable, 1 matched, 3 not supported."
    cells = [rows.nth(0).locator("td").nth(i).inner_text() for i in range(3, 8)]
    assert cells == ["+1", "+1,000", "0", "0", "+100"]

    # The drill-down: the model with the lost call is short, the others match.
    toggle = rows.nth(0).locator("button")
    assert toggle.inner_text() == f"Models ({len(short_sums)})"
    toggle.click()
    assert toggle.get_attribute("aria-expanded") == "true"
    model_rows = page.locator("#reconciliation-table tr.drill:visible table.models tbody tr")
    verdicts = {model_rows.nth(i).locator("td").first.inner_text(): model_rows.nth(i).locator(".verdict").inner_text()
                for i in range(model_rows.count())}
    assert verdicts == {name: "ledger short" if name == "gpt-4o-mini" else "match" for name in short_sums}
    requests, prompt, output = short_sums["gpt-4o-mini"]
    mini = [row for row in (model_rows.nth(i) for i in range(model_rows.count()))
            if row.locator("td").first.inner_text() == "gpt-4o-mini"][0]
    assert mini.locator("td").nth(2).inner_text() == f"{requests - 1:,} / {requests:,} (+1)"
    assert mini.locator("td").nth(3).inner_text() == f"{prompt - 1000:,} / {prompt:,} (+1,000)"

    # The provider filter applies to the tab; back to Usage shows the dashboard again.
    page.select_option("#provider-filter", "openai")
    tab.settle("#reconciliation-view")
    assert page.locator("#reconciliation-table > tbody > tr:not(.drill)").count() == 2
    page.select_option("#provider-filter", "")
    tab.settle("#reconciliation-view")
    page.click('.view-tab[data-view="usage"]')
    tab.settle()
    assert page.locator("#cards").is_visible() and page.locator("#reconciliation-view").is_hidden()
    assert tab.cards() == expected_cards(chosen(site, 30))
    tab.close()


def test_reconciliation_tab_fits_a_narrow_screen(site, browser):
    tab = Page(browser, site, 390, 844)
    page = tab.page
    tab.login("admin@example.com")
    tab.settle()
    page.click('.view-tab[data-view="reconciliation"]')
    tab.settle("#reconciliation-view")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    tab.close()


def test_page_headers_allow_nothing_from_other_origins(site):
    response = site["api"].get("/admin/")
    assert response.status_code == 200 and b"TokenLedger admin" in response.data
    assert response.headers["Content-Security-Policy"].startswith("default-src 'self'")
    assert response.headers["Cache-Control"] == "no-store"
    assert site["api"].get("/admin/assets/admin.js").status_code == 200


# ---- organizations ---------------------------------------------------------------------------

ACME = "Acme <Labs> & Co"  # markup in a name must show as text
GLOBEX = "Globex Interplanetary Logistics, Research and Development Division"  # long, for 390px


def org_records(calls, now):
    """Seeded calls over the last 20 days, stamped as the recorder stamps them: with the caller's
    organization and team at the time. `calls`: [(user, orgId, teamId, count, provider, model)].
    Each is 14 to 22 hours before a whole number of days ago, so it lies inside the last 30 days of
    any zone (Acme counts New York's days) whenever the test runs."""
    rng = random.Random(14)
    records = []
    for user, org_id, team_id, count, provider, model in calls:
        for i in range(count):
            at = now - timedelta(days=i % 20, seconds=rng.randrange(14 * 3600, 22 * 3600))
            at = at.replace(microsecond=at.microsecond // 1000 * 1000)
            prompt, completion = rng.randint(800, 4000), rng.randint(200, 1500)
            cost = round(prompt * 0.15e-6 + completion * 0.6e-6, 10)
            record = usage_record(user, at, prompt, completion, cost, model=model, provider=provider)
            records.append({**record, "orgId": org_id, "teamId": team_id})
    return records


@pytest.fixture(scope="module")
def org_site(tmp_path_factory):
    """Acme and Globex, made by a platform admin through the API, and the default organization,
    each with members who made calls: seeded ones, and one each through the API today (the demo
    provider; the ledger stamps the organization itself). Globex's members spend the most."""
    app = e2e_app(tmp_path_factory, LEDGER_WRITES="sync")
    client = app.test_client()
    create_user(app, "admin@example.com", role="admin")
    platform = bearer(client, "admin@example.com")
    acme, globex = make_org(client, platform, ACME), make_org(client, platform, GLOBEX)
    # Acme counts its days in New York.
    assert client.patch(f"/admin/orgs/{acme}", json={"timeZone": "America/New_York"},
                        headers=platform).status_code == 200
    qa = make_team(client, platform, acme, "QA")
    owner, _ = member(app, client, platform, acme, "owner@acme.test", role="admin")
    ann, ann_headers = member(app, client, platform, acme, "ann@acme.test", team_id=qa)
    bea, bea_headers = member(app, client, platform, globex, "bea@globex.test")
    spy, _ = member(app, client, platform, globex, "spy@globex.test")
    dan = create_user(app, "dan@example.com")
    in_acme, in_globex = ObjectId(acme), ObjectId(globex)
    records = org_records([(owner, in_acme, None, 3, "openai", "gpt-4o-mini"),
                           (ann, in_acme, ObjectId(qa), 7, "openai", "gpt-4.1"),
                           (bea, in_globex, None, 6, "gemini", "gemini-2.5-flash"),
                           (spy, in_globex, None, 9, "anthropic", "claude-haiku-4-5"),
                           (dan, DEFAULT_ORG_ID, None, 4, "openai", "gpt-4o-mini")], datetime.now(timezone.utc))
    insert_records(app, records)
    for user, headers, org_id in ((ann, ann_headers, in_acme), (bea, bea_headers, in_globex),
                                  (dan, bearer(client, "dan@example.com"), DEFAULT_ORG_ID)):
        response = client.post("/api/test-generation", json={"prompt": "Password reset by email", "count": 2},
                               headers=headers)
        assert response.status_code == 200, response.json
        usage = response.json["data"]["usage"]
        assert len(usage["callIds"]) == 1
        records.append({"userId": user["_id"], "userEmail": user["email"], "orgId": org_id,
                        "modelName": usage["modelName"], "totalTokens": usage["totalTokens"], "cost": usage["cost"],
                        "callId": usage["callIds"][0]})
    with served(app) as url:
        yield {"url": url, "api": client, "platform": platform, "acme": acme, "globex": globex,
               "records": records, "users": {u["email"]: u for u in (owner, ann, bea, spy, dan)}}


def of_org(site, org_id):
    return [r for r in site["records"] if r["orgId"] == ObjectId(org_id)]


def expected_top_users(records):
    """The top-users rows the page shows: by tokens, then user id, as the API ranks them."""
    users = {}
    for r in records:
        users.setdefault(r["userId"], []).append(r)
    ranked = sorted(users.items(), key=lambda item: (-sum(r["totalTokens"] for r in item[1]), str(item[0])))
    return [[str(rank), calls[0]["userEmail"], f"{len(calls):,}", f"{sum(r['totalTokens'] for r in calls):,}",
             usd(math.fsum(r["cost"] for r in calls))] for rank, (_, calls) in enumerate(ranked, 1)]


def table_rows(page, table):
    rows = page.locator(f"{table} tbody tr")
    return [[text.strip() for text in rows.nth(i).locator("td").all_inner_texts()] for i in range(rows.count())]


def test_an_organization_admin_sees_only_their_organization(org_site, browser):
    site = org_site
    acme = of_org(site, site["acme"])
    assert len(acme) == 3 + 7 + 1 and len(of_org(site, site["globex"])) == 6 + 9 + 1
    tab = Page(browser, site, 390, 844)
    page = tab.page
    tab.login("owner@acme.test")
    tab.settle()

    # Their organization by name (its markup as text) and zone, no selector, no reconciliation tab.
    assert tab.text("#org-label") == f"Organization: {ACME} · time zone America/New_York"
    assert tab.text("#tz-note").startswith("Times shown in America/New_York")
    assert "(whole days in America/New_York)" in tab.text("#range-label")
    assert page.locator("#org-picker").is_hidden() and page.locator("#view-tabs").is_hidden()
    # Acme's figures only, and nothing of Globex (nor of the default organization) anywhere in the page.
    assert tab.cards() == expected_cards(acme)
    assert table_rows(page, "#top-users-table") == expected_top_users(acme)
    models = [row[0] for row in table_rows(page, "#breakdown-table")]
    assert sorted(models) == sorted({r["modelName"] for r in acme})
    document = page.content().lower()
    for other in ("globex", "bea@", "spy@", "dan@", "gemini", "claude"):
        assert other not in document, other
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    tab.shot("org-admin")

    page.click('#top-users-table button:has-text("ann@acme.test")')
    tab.settle("#user-panel")
    ann = [r for r in acme if r["userEmail"] == "ann@acme.test"]
    assert tab.text("#user-tokens") == f"{sum(r['totalTokens'] for r in ann):,}"
    assert tab.text("#user-requests") == f"{len(ann):,}"

    filename, rows = export_csv(page)
    assert sorted(row["callId"] for row in rows) == sorted(r["callId"] for r in acme)
    assert filename.endswith("-acme-labs-co.csv")

    # A reload reads the account again and keeps the scope.
    page.reload()
    tab.settle()
    assert tab.text("#org-label") == f"Organization: {ACME} · time zone America/New_York"
    assert tab.cards() == expected_cards(acme)

    # What the page never asks for, the API refuses too.
    owner = bearer(site["api"], "owner@acme.test")
    spy = site["users"]["spy@globex.test"]["_id"]
    for path, query in (("/admin/openai/dashboard", {"orgId": site["globex"]}),
                        (f"/admin/openai/user/{spy}/stats", {}), (f"/admin/orgs/{site['globex']}", {})):
        assert site["api"].get(path, query_string=query, headers=owner).status_code == 404, path
    assert site["api"].get("/admin/openai/reconciliation", headers=owner).status_code == 403
    tab.close()


def test_a_platform_admin_chooses_the_organization(org_site, browser):
    site = org_site
    tab = Page(browser, site, 390, 844)
    page = tab.page
    tab.login("admin@example.com")
    tab.settle()
    orgs = site["api"].get("/admin/orgs", headers=site["platform"]).json["data"]
    assert sorted(org["name"] for org in orgs) == sorted([ACME, GLOBEX, "default"])
    assert page.locator("#org-filter option").all_inner_texts() == [
        "All organizations", *[f"{o['name']} ({o['timeZone']})" for o in orgs]]
    assert page.locator("#zone-picker").is_visible() and "(whole days in UTC)" in tab.text("#range-label")
    assert page.locator("#org-label").is_hidden() and page.locator('.view-tab[data-view="reconciliation"]').is_visible()
    assert tab.cards() == expected_cards(site["records"])

    # Globex: every figure, the user drill-down and the export are Globex's, and every analytics
    # request the page makes names it.
    asked = []
    page.on("request", lambda request: "/admin/openai/" in request.url and asked.append(request.url))
    page.select_option("#org-filter", site["globex"])
    tab.settle()
    globex = of_org(site, site["globex"])
    assert tab.cards() == expected_cards(globex)
    assert table_rows(page, "#top-users-table") == expected_top_users(globex)
    assert "acme" not in page.locator("#usage-view").inner_text().lower()
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.click('#top-users-table button:has-text("spy@globex.test")')
    tab.settle("#user-panel")
    assert tab.text("#user-requests") == f"{sum(r['userEmail'] == 'spy@globex.test' for r in globex):,}"
    filename, rows = export_csv(page)
    assert sorted(row["callId"] for row in rows) == sorted(r["callId"] for r in globex)
    assert "-globex-interplanetary-" in filename
    assert len(asked) >= 9 and all(f"orgId={site['globex']}" in url for url in asked), asked

    # Another organization, then all of them again; choosing one closes the user's panel.
    page.select_option("#org-filter", site["acme"])
    tab.settle()
    assert page.locator("#user-panel").is_hidden()
    assert tab.cards() == expected_cards(of_org(site, site["acme"]))
    assert tab.text("#tz-note").startswith("Times shown in America/New_York")
    # A zone of the admin's choosing: every request names it.
    page.select_option("#zone-filter", "Asia/Jakarta")
    tab.settle()
    assert tab.text("#tz-note").startswith("Times shown in Asia/Jakarta")
    assert "timeZone=Asia%2FJakarta" in asked[-1]
    page.select_option("#zone-filter", "")
    page.select_option("#org-filter", "")
    tab.settle()
    assert tab.cards() == expected_cards(site["records"])
    tab.close()
