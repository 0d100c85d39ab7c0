"""The My usage page at /me/ in headless Chromium against the real app on a loopback port (the
admin page's browser, server and tab helpers). Two users make calls through the API with the
demo provider; the figures the page must show are summed here from those calls' responses, and
nothing of the other user may reach the page.

Screenshots at 1280px and 390px go to docs/screenshots/my-usage-<width>.png (with UPDATE_SCREENSHOTS=1).
"""
import math

import pytest

sync_api = pytest.importorskip("playwright.sync_api")

from tests.e2e.test_admin_page import (  # noqa: E402
    Page,
    browser,  # noqa: F401  (the module's Chromium, a fixture)
    e2e_app,
    served,
    table_rows,
    usd,
)
from tests.helpers import bearer, create_user  # noqa: E402

ANN, BERT, ADMIN = "ann@example.com", "bert.elsewhere@example.com", "admin@example.com"
# (prompt, count, tags): Ann's calls, then Bert's, whose tags must never show in Ann's page.
ANN_CALLS = [("Checkout with a saved card", 2, ["checkout", "smoke"]),
             ("Search the catalogue by title", 1, ["search"]),
             ("Refund part of an order", 3, ["checkout", "refunds"])]
BERT_CALLS = [("Export the admin audit log", 2, ["bert-secret-tag"]),
              ("Rotate the signing keys", 1, ["zz-private"])]
ANN_DAY_TOKENS, ANN_MONTH_USD = 1_000_000, 5


def make_call(client, headers, prompt, count, tags):
    response = client.post("/api/test-generation", json={"prompt": prompt, "count": count, "tags": tags,
                                                          "metadata": {"ticket": "QA-15"}}, headers=headers)
    assert response.status_code == 200, response.json
    usage = response.json["data"]["usage"]
    return {"tags": tags, "totalTokens": usage["totalTokens"], "cost": usage["cost"],
            "model": usage["modelName"], "provider": usage["provider"], "callIds": usage["callIds"]}


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """Ann (with a budget of her own), Bert and an admin; Ann and Bert make their calls through the
    API, recorded before each response (LEDGER_WRITES=sync)."""
    app = e2e_app(tmp_path_factory, LEDGER_WRITES="sync")
    client = app.test_client()
    create_user(app, ADMIN, role="admin")
    ann = create_user(app, ANN)
    create_user(app, BERT)
    calls, headers = {}, {ADMIN: bearer(client, ADMIN)}
    for email, plan in ((ANN, ANN_CALLS), (BERT, BERT_CALLS)):
        headers[email] = bearer(client, email)
        calls[email] = [make_call(client, headers[email], *call) for call in plan]
        if email == ANN:
            budget = client.put(f"/admin/openai/budgets/{ann['_id']}", headers=headers[ADMIN],
                                json={"tokensPerDay": ANN_DAY_TOKENS, "usdPerMonth": ANN_MONTH_USD})
            assert budget.status_code == 200, budget.json
    with served(app) as url:
        yield {"url": url, "api": client, "calls": calls, "headers": headers}


def open_me(browser, site, width, height, **options):
    tab = Page(browser, site, width, height, **options)
    tab.page.goto(f"{site['url']}/me/")
    return tab


def restore_session(tab, site, email):
    """Give the tab `email`'s session as a sign-in leaves it, and reload: the token comes from the
    fixture's own sign-in (each sign-in costs a password hash)."""
    token = site["headers"][email]["Authorization"].removeprefix("Bearer ")
    tab.page.evaluate("([token, email]) => { sessionStorage.setItem('tokenledger.accessToken', token); "
                      "sessionStorage.setItem('tokenledger.email', email); }", [token, email])
    tab.page.reload()
    tab.settle("#usage-view")


def signed_in(browser, site, email, width=1280, height=900, **options):
    tab = open_me(browser, site, width, height, **options)
    restore_session(tab, site, email)
    return tab


def expected_cards(calls):
    return [f"{sum(c['totalTokens'] for c in calls):,}", usd(math.fsum(c["cost"] for c in calls)), f"{len(calls):,}"]


def expected_tags(calls):
    """[tag, requests, tokens, cost] per tag: a call counts under each of its tags."""
    tags = {}
    for call in calls:
        for tag in call["tags"]:
            tags.setdefault(tag, []).append(call)
    return sorted([tag, f"{len(of):,}", f"{sum(c['totalTokens'] for c in of):,}", usd(math.fsum(c["cost"] for c in of))]
                  for tag, of in tags.items())


def cards(tab):
    return [tab.text(f"#card-{name}") for name in ("tokens", "cost", "requests")]


def history_column(tab, index):
    return [row[index] for row in table_rows(tab.page, "#history-table")]


def test_a_user_sees_exactly_their_own_usage(site, browser):
    ann = site["calls"][ANN]
    tab = open_me(browser, site, 1280, 900)
    page = tab.page
    tab.login(ANN)
    tab.settle("#usage-view")
    assert page.context.cookies() == [], "the token must never sit in a cookie"
    assert page.evaluate("sessionStorage.getItem('tokenledger.accessToken')")
    assert tab.text("#session-email") == ANN
    assert page.locator("#admin-link").is_hidden()

    # Totals and tags as summed here from Ann's calls; the API says the same.
    assert cards(tab) == expected_cards(ann)
    assert sorted(table_rows(page, "#tags-table")) == expected_tags(ann)
    api_tags = site["api"].get("/api/me/usage/breakdown", query_string={"by": "tag"}, headers=site["headers"][ANN]).json
    assert sorted([row["key"], f"{row['totalRequests']:,}", f"{row['totalTokens']:,}", usd(row["totalCost"])]
                  for row in api_tags["data"]) == expected_tags(ann)
    assert "several tags counts under each" in tab.text("#tags-panel")
    assert table_rows(page, "#models-table") == [["demo", "demo", "3", f"{sum(c['totalTokens'] for c in ann):,}",
                                                  usd(math.fsum(c["cost"] for c in ann)), "100.0%"]]

    # Her three calls, newest first, times local with the UTC instant on hover.
    history = site["api"].get("/api/me/usage/history", headers=site["headers"][ANN]).json["data"]
    assert sorted(r["_id"] for r in history["data"]) == sorted(i for c in ann for i in c["callIds"])
    assert history_column(tab, 6) == [f"{c['totalTokens']:,}" for c in reversed(ann)]
    assert history_column(tab, 8) == [" ".join(c["tags"]) for c in reversed(ann)]
    times = page.locator("#history-table tbody time")
    assert [times.nth(i).get_attribute("title") for i in range(times.count())] == [
        f"{r['timestamp']} (UTC)" for r in history["data"]]
    assert history_column(tab, 3) == ["ok"] * 3
    assert tab.text("#history-page") == "Page 1 of 1 · 3 calls"
    # Her days are her organization's (the default one counts in UTC), and where her month is heading.
    assert tab.text("#tz-note").startswith("Times shown in UTC")
    projection = site["api"].get("/api/me/usage", headers=site["headers"][ANN]).json["data"]["projection"]
    assert tab.text("#projection").startswith(f"At this pace you reach {projection['projected']['tokens']:,} tokens")
    # Calls by type: her generations (no embeddings: she saved no cases).
    assert table_rows(page, "#operations-table") == [["test generation", "3", f"{sum(c['totalTokens'] for c in ann):,}",
                                                      usd(math.fsum(c["cost"] for c in ann))]]

    # Her budget: tokens today against her limit, cost this month against hers, no limit otherwise.
    used = sum(c["totalTokens"] for c in ann)
    assert tab.text("#budget-day-tokens") == f"{used:,} used of {ANN_DAY_TOKENS:,} · {ANN_DAY_TOKENS - used:,} left"
    assert tab.text("#budget-day-usd") == f"{usd(math.fsum(c['cost'] for c in ann))} used · no limit"
    assert tab.text("#budget-month-usd").endswith(f"used of {usd(ANN_MONTH_USD)} · "
                                                  f"{usd(ANN_MONTH_USD - math.fsum(c['cost'] for c in ann))} left")
    assert tab.text("#budget-month-tokens") == f"{used:,} used · no limit"

    # Nothing of Bert anywhere in the page.
    document = page.content().lower()
    for other in ("bert", "secret-tag", "zz-private", "audit log"):
        assert other not in document, other
    tab.shot("my-usage")

    # The history's filters: one tag, then a tag two calls share, then all again.
    page.select_option("#history-tag", "search")
    tab.settle("#history-panel")
    assert history_column(tab, 6) == [f"{ann[1]['totalTokens']:,}"]
    page.select_option("#history-tag", "checkout")
    tab.settle("#history-panel")
    assert history_column(tab, 6) == [f"{ann[2]['totalTokens']:,}", f"{ann[0]['totalTokens']:,}"]
    assert tab.text("#history-page") == "Page 1 of 1 · 2 calls"
    page.select_option("#history-tag", "")
    tab.settle("#history-panel")
    assert len(history_column(tab, 6)) == 3

    # A preset chosen with the keyboard; then an empty range says so.
    today = page.locator('button[data-preset="today"]')
    today.focus()
    page.keyboard.press("Enter")
    tab.settle("#usage-view")
    assert today.get_attribute("aria-pressed") == "true" and cards(tab) == expected_cards(ann)
    page.click('button[data-preset="custom"]')
    page.fill("#custom-start", "2020-01-01")
    page.fill("#custom-end", "2020-01-31")
    page.click('#custom-range button[type="submit"]')
    tab.settle("#usage-view")
    assert cards(tab) == ["0", "$0.00", "0"]
    for table in ("#models-table", "#history-table"):
        assert "No calls in this range" in tab.text(f"{table} tbody")
    page.fill("#custom-start", "2020-02-01")
    page.click('#custom-range button[type="submit"]')
    assert tab.text("#alert") == "The start date must not be after the end date."

    # Everything is reachable with Tab.
    page.locator("#logout").focus()
    for _ in range(30):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "history-tag":
            break
    else:
        pytest.fail("the history's tag filter is not reachable with the keyboard")

    # A reload keeps the session; logging out forgets it and every figure.
    page.reload()
    tab.settle("#usage-view")
    assert cards(tab) == expected_cards(ann)
    page.click("#logout")
    assert page.locator("#login-view").is_visible()
    assert page.evaluate("sessionStorage.getItem('tokenledger.accessToken')") is None
    assert "checkout" not in page.content()

    # Bert, in the same tab, sees his and nothing of Ann's.
    tab.login(BERT)
    tab.settle("#usage-view")
    bert = site["calls"][BERT]
    assert cards(tab) == expected_cards(bert)
    assert sorted(table_rows(page, "#tags-table")) == expected_tags(bert)
    document = page.content().lower()
    for other in ("ann@", "checkout", "smoke", "refunds", "search"):
        assert other not in document, other
    tab.close()


def test_a_narrow_screen_has_no_sideways_scroll(site, browser):
    tab = open_me(browser, site, 390, 844)
    page = tab.page
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    restore_session(tab, site, ANN)
    assert cards(tab) == expected_cards(site["calls"][ANN])
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    # The calls and the models read as cards there: nothing to scroll sideways inside them either.
    assert page.evaluate("['#history-table', '#models-table'].map((table) => document.querySelector(table)"
                         ".parentElement).every((box) => box.scrollWidth <= box.clientWidth)")
    assert table_rows(page, "#history-table")[0][6] == f"{site['calls'][ANN][-1]['totalTokens']:,}"
    tab.shot("my-usage")
    tab.close()


def test_an_admin_sees_their_own_usage_and_a_link_to_the_dashboard(site, browser):
    tab = signed_in(browser, site, ADMIN)
    page = tab.page
    assert cards(tab) == ["0", "$0.00", "0"]
    assert "No calls in this range" in tab.text("#history-table tbody")
    assert tab.text("#budget-day-tokens") == "0 used · no limit"
    link = page.locator("#admin-link")
    assert link.is_visible() and link.inner_text() == "Admin dashboard"
    # The dashboard shares the tab's session: no second sign-in.
    link.click()
    page.wait_for_url("**/admin/")
    tab.settle()
    assert page.locator("#login-view").is_hidden()
    tab.close()


def test_api_errors_and_an_expired_session_are_explained(site, browser):
    # The browser logs each failed answer as "Failed to load resource"; those are expected here.
    tab = open_me(browser, site, 1280, 900, allowed=("Failed to load resource",))
    page = tab.page
    page.route("**/api/me/usage/breakdown?*", lambda route: route.fulfill(
        status=503, content_type="application/json",
        body='{"success": false, "message": "The database is unavailable <try later>"}'))
    restore_session(tab, site, ANN)
    assert tab.text("#alert") == "The database is unavailable <try later>"
    assert tab.text("#models-table tbody") == "Could not be loaded: The database is unavailable <try later>"
    assert cards(tab) == ["—", "—", "—"]
    # The parts that answered are shown all the same.
    assert len(history_column(tab, 6)) == 3 and tab.text("#budget-day-tokens").endswith("left")

    page.unroute("**/api/me/usage/breakdown?*")
    page.evaluate("sessionStorage.setItem('tokenledger.accessToken', 'not-a-token')")
    page.reload()
    page.locator("#login-view").wait_for(state="visible")
    assert tab.text("#alert") == "Your session has expired. Please sign in again."
    assert page.evaluate("sessionStorage.getItem('tokenledger.accessToken')") is None
    tab.close()


def test_page_headers_allow_nothing_from_other_origins(site):
    response = site["api"].get("/me/")
    assert response.status_code == 200 and b"TokenLedger: my usage" in response.data
    assert response.headers["Content-Security-Policy"].startswith("default-src 'self'")
    assert "'unsafe-inline'" not in response.headers["Content-Security-Policy"]
    assert response.headers["Cache-Control"] == "no-store"
    assert site["api"].get("/admin/assets/me.js").status_code == 200
    assert site["api"].get("/me").status_code == 308
