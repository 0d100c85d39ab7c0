"""One day reconciled against fakes of both usage reports. Every expected number below is
worked out by hand from the seeded records and the fake report pages."""
import json
from datetime import datetime, time, timedelta, timezone

import httpx
import httpx2
import pytest

from backend.alerts import repository as alerts_repository
from backend.db import ALERTS, RECONCILIATIONS, get_db
from backend.reconciliation import services
from tests.reconciliation.fakes import (anthropic_page, anthropic_result, openai_page, openai_result)
from tests.reconciliation.support import (ANTHROPIC_ADMIN_KEY, DAY, DAY_END, DAY_START, NOW, OPENAI_ADMIN_KEY,
                                          by_provider, insert, ledger_record)

MINI, MINI_SNAPSHOT = "gpt-4o-mini", "gpt-4o-mini-2024-07-18"
GPT41, GPT41_SNAPSHOT = "gpt-4.1", "gpt-4.1-2025-04-14"
HAIKU, HAIKU_SNAPSHOT = "claude-3-5-haiku", "claude-3-5-haiku-20241022"
ZERO = {"requests": 0, "uncachedInputTokens": 0, "cachedInputTokens": 0, "cacheWriteTokens": 0, "outputTokens": 0}


def openai_ledger():
    """Three gpt-4o-mini calls and one gpt-4.1 call on DAY, plus records that must not count."""
    return [
        ledger_record("openai", MINI, MINI_SNAPSHOT, 1000, 50, cached=200),
        ledger_record("openai", MINI, MINI_SNAPSHOT, 500, 60),
        ledger_record("openai", MINI, MINI_SNAPSHOT, 300, 70, cached=100, estimated=True),
        ledger_record("openai", GPT41, GPT41_SNAPSHOT, 400, 40),
        ledger_record("openai", MINI, MINI_SNAPSHOT, 9000, 900, active=False),  # soft-deleted
        ledger_record("openai", MINI, MINI_SNAPSHOT, 7000, 700, day=DAY.replace(day=21)),  # another day
    ]


# gpt-4o-mini on DAY: 3 requests, input 1000+500+300 = 1800 of which 300 cached, output 50+60+70 = 180.
MINI_LEDGER = {"requests": 3, "uncachedInputTokens": 1500, "cachedInputTokens": 300, "cacheWriteTokens": 0,
               "outputTokens": 180, "estimatedRequests": 1}
GPT41_LEDGER = {"requests": 1, "uncachedInputTokens": 400, "cachedInputTokens": 0, "cacheWriteTokens": 0,
                "outputTokens": 40, "estimatedRequests": 0}


def serve_openai(report, mini=(3, 1800, 300, 180), gpt41=(1, 400, 0, 40)):
    """Two pages: gpt-4o-mini on the first, gpt-4.1 on the second. Tuples: requests, input, cached, output."""
    report.pages = [
        openai_page(DAY_START, [openai_result(MINI_SNAPSHOT, mini[1], mini[3], mini[2], mini[0])]),
        openai_page(DAY_START, [openai_result(GPT41_SNAPSHOT, gpt41[1], gpt41[3], gpt41[2], gpt41[0])]),
    ]


def reconcile(app):
    with app.app_context():
        return by_provider(services.reconcile_day(get_db(app), app.config, DAY, NOW))


def test_an_exact_match_reads_every_page(recon_app, openai_report):
    app = recon_app(ANTHROPIC_ADMIN_KEY=None)
    insert(app, openai_ledger())
    serve_openai(openai_report)

    result = reconcile(app)["openai"]

    assert result["verdict"] == "match" and result["reason"] is None
    assert result["ledger"] == {"requests": 4, "uncachedInputTokens": 1900, "cachedInputTokens": 300,
                                "cacheWriteTokens": 0, "outputTokens": 220, "estimatedRequests": 1}
    assert result["reported"] == {"requests": 4, "uncachedInputTokens": 1900, "cachedInputTokens": 300,
                                  "cacheWriteTokens": 0, "outputTokens": 220}
    assert result["difference"] == ZERO
    assert [(row["model"], row["verdict"], row["ledger"]) for row in result["models"]] == [
        (GPT41_SNAPSHOT, "match", GPT41_LEDGER), (MINI_SNAPSHOT, "match", MINI_LEDGER)]
    first, second = openai_report.requests
    assert str(first.url).startswith("https://api.openai.com/v1/organization/usage/completions?")
    assert dict(first.url.params) == {"start_time": str(DAY_START), "end_time": str(DAY_END),
                                      "bucket_width": "1d", "group_by": "model"}
    assert second.url.params["page"] == "page_AAAAAGdGxdEiJdKO1"
    assert first.headers["Authorization"] == f"Bearer {OPENAI_ADMIN_KEY}"
    assert get_db(app)[ALERTS].count_documents({}) == 0


def test_a_lost_call_is_ledger_short_with_the_missing_tokens_and_alerts_once(recon_app, openai_report):
    app = recon_app(ANTHROPIC_ADMIN_KEY=None)
    insert(app, openai_ledger())
    # OpenAI billed a fourth gpt-4o-mini call the ledger never recorded: 800 input, 75 output.
    serve_openai(openai_report, mini=(4, 2600, 300, 255))

    result = reconcile(app)["openai"]

    assert result["verdict"] == "ledger_short"
    assert result["difference"] == {"requests": 1, "uncachedInputTokens": 800, "cachedInputTokens": 0,
                                    "cacheWriteTokens": 0, "outputTokens": 75}
    rows = {row["model"]: row for row in result["models"]}
    assert rows[MINI_SNAPSHOT]["verdict"] == "ledger_short"
    assert rows[GPT41_SNAPSHOT]["verdict"] == "match"
    alert = get_db(app)[ALERTS].find_one()
    assert alert["_id"] == "reconciliation|openai|2026-11-22"
    assert alert["payload"]["text"] == (
        "TokenLedger reconciliation: openai 2026-11-22 is ledger_short: the provider billed more than the "
        "ledger holds (lost calls). Provider minus ledger: requests +1, uncached input tokens +800, "
        "output tokens +75 (by model: gpt-4o-mini-2024-07-18: requests +1, uncached input tokens +800, output "
        "tokens +75). Note: 1 call(s) of this day are estimates (the "
        "provider did not report their usage: a timeout, a stream cut short, a process that died): their tokens are "
        "the ledger's best count, so a difference in their output or input can be theirs rather than a lost call.")
    assert alert["payload"]["reconciliation"] == {
        "event": "opened", "provider": "openai", "date": "2026-11-22", "verdict": "ledger_short", "models": [MINI_SNAPSHOT],
        "difference": {"requests": 1, "uncachedInputTokens": 800, "cachedInputTokens": 0, "cacheWriteTokens": 0,
                       "outputTokens": 75}}

    # A second run of the same day replaces its result and queues no second alert.
    serve_openai(openai_report, mini=(4, 2600, 300, 255))
    assert reconcile(app)["openai"]["verdict"] == "ledger_short"
    assert get_db(app)[RECONCILIATIONS].count_documents({"provider": "openai", "date": "2026-11-22"}) == 1
    assert get_db(app)[ALERTS].count_documents({}) == 1


def test_calls_the_provider_never_billed_are_ledger_over(recon_app, openai_report):
    app = recon_app(ANTHROPIC_ADMIN_KEY=None)
    insert(app, openai_ledger())
    serve_openai(openai_report, gpt41=(0, 0, 0, 0))

    result = reconcile(app)["openai"]

    assert result["verdict"] == "ledger_over"
    assert result["difference"] == {"requests": -1, "uncachedInputTokens": -400, "cachedInputTokens": 0,
                                    "cacheWriteTokens": 0, "outputTokens": -40}
    assert get_db(app)[ALERTS].find_one()["_id"] == "reconciliation|openai|2026-11-22"


def test_a_model_only_the_provider_reports_is_counted_against_an_empty_ledger(recon_app, openai_report):
    app = recon_app(ANTHROPIC_ADMIN_KEY=None)
    openai_report.pages = [openai_page(DAY_START, [openai_result("o3-2025-04-16", 120, 30, 0, 1)])]

    result = reconcile(app)["openai"]

    assert result["verdict"] == "ledger_short"
    assert result["models"] == [{
        "model": "o3-2025-04-16", "verdict": "ledger_short",
        "ledger": {**ZERO, "estimatedRequests": 0},
        "reported": {"requests": 1, "uncachedInputTokens": 120, "cachedInputTokens": 0, "cacheWriteTokens": 0,
                     "outputTokens": 30},
        "difference": {"requests": 1, "uncachedInputTokens": 120, "cachedInputTokens": 0, "cacheWriteTokens": 0,
                       "outputTokens": 30}}]


def test_differences_within_the_tolerance_match(recon_app, openai_report):
    app = recon_app(ANTHROPIC_ADMIN_KEY=None, RECONCILE_TOLERANCE=5)
    insert(app, openai_ledger())
    serve_openai(openai_report, mini=(3, 1805, 300, 175))

    result = reconcile(app)["openai"]

    assert result["verdict"] == "match" and result["tolerance"] == 5
    assert result["difference"]["uncachedInputTokens"] == 5 and result["difference"]["outputTokens"] == -5


def test_anthropic_cache_reads_and_writes_compare_and_requests_are_not_compared(recon_app, anthropic_report):
    app = recon_app(OPENAI_ADMIN_KEY=None, RECONCILE_ANTHROPIC_API_KEY_ID="apikey_01Rj2N8SVvo6BePZj99NhmiT")
    # promptTokens include cache reads and writes: uncached 1500-200-300 = 1000 and 800-0-0 = 800.
    insert(app, [ledger_record("anthropic", HAIKU, HAIKU_SNAPSHOT, 1500, 100, cached=200, cache_write=300),
                 ledger_record("anthropic", HAIKU, HAIKU_SNAPSHOT, 800, 60)])
    anthropic_report.pages = [
        anthropic_page("2026-11-22T00:00:00Z", "2026-11-23T00:00:00Z",
                       [anthropic_result(HAIKU_SNAPSHOT, 1000, 100, cache_read=200, cache_5m=100, cache_1h=200)]),
        anthropic_page("2026-11-22T00:00:00Z", "2026-11-23T00:00:00Z", [anthropic_result(HAIKU_SNAPSHOT, 800, 60)]),
    ]

    result = reconcile(app)["anthropic"]

    assert result["verdict"] == "match" and result["requestsCompared"] is False
    assert result["reported"] == {"requests": None, "uncachedInputTokens": 1800, "cachedInputTokens": 200,
                                  "cacheWriteTokens": 300, "outputTokens": 160}
    assert result["ledger"]["requests"] == 2
    assert result["difference"] == {"requests": None, "uncachedInputTokens": 0, "cachedInputTokens": 0,
                                    "cacheWriteTokens": 0, "outputTokens": 0}
    assert result["filters"] == {"apiKeyId": "apikey_01Rj2N8SVvo6BePZj99NhmiT"}
    first, second = anthropic_report.requests
    assert str(first.url).startswith("https://api.anthropic.com/v1/organizations/usage_report/messages?")
    assert first.url.params["starting_at"] == "2026-11-22T00:00:00Z"
    assert first.url.params["ending_at"] == "2026-11-23T00:00:00Z"
    assert first.url.params["bucket_width"] == "1d"
    assert first.url.params.get_list("group_by[]") == ["model"]
    assert first.url.params.get_list("api_key_ids[]") == ["apikey_01Rj2N8SVvo6BePZj99NhmiT"]
    assert first.headers["x-api-key"] == ANTHROPIC_ADMIN_KEY
    assert first.headers["anthropic-version"] == "2023-06-01"
    assert second.url.params["page"] == "page_MjAyNS0wNS0xNFQ1"


def test_anthropic_cache_writes_the_ledger_lacks_are_ledger_short(recon_app, anthropic_report):
    app = recon_app(OPENAI_ADMIN_KEY=None)
    insert(app, [ledger_record("anthropic", HAIKU, HAIKU_SNAPSHOT, 1000, 100)])
    anthropic_report.pages = [anthropic_page("2026-11-22T00:00:00Z", "2026-11-23T00:00:00Z",
                                             [anthropic_result(HAIKU_SNAPSHOT, 1000, 100, cache_1h=2048)])]

    result = reconcile(app)["anthropic"]

    assert result["verdict"] == "ledger_short"
    assert result["difference"] == {"requests": None, "uncachedInputTokens": 0, "cachedInputTokens": 0,
                                    "cacheWriteTokens": 2048, "outputTokens": 0}


def test_the_openai_filters_and_admin_base_url_follow_the_settings(recon_app, openai_report):
    app = recon_app(ANTHROPIC_ADMIN_KEY=None, OPENAI_ADMIN_BASE_URL="https://admin-proxy.example.com/v1/",
                    OPENAI_BASE_URL="https://gateway.example.com/v1",
                    RECONCILE_OPENAI_PROJECT_ID="proj_abc123", RECONCILE_OPENAI_API_KEY_ID="key_xyz789")
    openai_report.pages = [openai_page(DAY_START, [])]

    result = reconcile(app)["openai"]

    assert result["verdict"] == "match"
    assert result["filters"] == {"projectId": "proj_abc123", "apiKeyId": "key_xyz789"}
    (request,) = openai_report.requests
    assert str(request.url).startswith("https://admin-proxy.example.com/v1/organization/usage/completions?")
    assert request.url.params.get_list("project_ids") == ["proj_abc123"]
    assert request.url.params.get_list("api_key_ids") == ["key_xyz789"]


def test_openai_cache_writes_recorded_by_a_generation_match_the_usage_report(make_app, fake_openai, openai_report):
    """A real call through the SDK whose reply reports cache writes, then that day reconciled:
    the ledger holds the writes as writes (not as uncached input), so the day matches."""
    from backend.clock import now
    from tests.helpers import bearer, cases_json, chat_completion, create_user

    app = make_app(LLM_PROVIDER="openai", OPENAI_API_KEY="sk-test", LLM_MAX_RETRIES=0, OPENAI_ADMIN_KEY=OPENAI_ADMIN_KEY,
                   LLM_TRANSPORTS={"openai": fake_openai.transport}, RECONCILE_OPENAI_PROJECT_ID="proj_abc123",
                   RECONCILE_TRANSPORTS={"openai": openai_report.transport})
    create_user(app, "dev@example.com")
    client = app.test_client()
    fake_openai.reply(chat_completion(cases_json(1), 1000, 100, cached=200, cache_write=300, model="gpt-6-cyber"))
    assert client.post("/api/test-generation", json={"prompt": "x", "count": 1, "model": "gpt-6-cyber"},
                       headers=bearer(client, "dev@example.com")).status_code == 200
    day = now(app).date()
    start = int(datetime.combine(day, time(), timezone.utc).timestamp())
    openai_report.pages = [openai_page(start, [openai_result("gpt-6-cyber", 1000, 100, 200, 1, cache_write=300)])]

    with app.app_context():
        [result] = [r for r in services.reconcile_day(get_db(app), app.config, day, NOW) if r["provider"] == "openai"]

    assert result["verdict"] == "match"
    assert result["ledger"]["cacheWriteTokens"] == result["reported"]["cacheWriteTokens"] == 300
    assert result["ledger"]["uncachedInputTokens"] == result["reported"]["uncachedInputTokens"] == 500


def test_an_admin_key_without_filters_warns_at_start_up():
    from backend.config import load_config

    _, warnings = load_config({"OPENAI_ADMIN_KEY": "sk-admin-test"})
    assert ("OPENAI_ADMIN_KEY is set without RECONCILE_OPENAI_PROJECT_ID or RECONCILE_OPENAI_API_KEY_ID: "
            "reconciliation compares the whole organization's openai usage with the ledger, so any other caller in "
            "it makes every day ledger_short.") in warnings
    _, warnings = load_config({"OPENAI_ADMIN_KEY": "sk-admin-test", "RECONCILE_OPENAI_PROJECT_ID": "proj_1"})
    assert not any("OPENAI_ADMIN_KEY" in warning for warning in warnings)


def test_the_admin_key_never_goes_to_the_generation_gateway(recon_app, openai_report, anthropic_report):
    app = recon_app(OPENAI_BASE_URL="https://litellm.internal.example/v1",
                    ANTHROPIC_BASE_URL="https://openrouter.example/api")
    openai_report.pages = [openai_page(DAY_START, [])]
    anthropic_report.pages = [anthropic_page("2026-11-22T00:00:00Z", "2026-11-23T00:00:00Z", [])]

    reconcile(app)

    [openai_request] = openai_report.requests
    [anthropic_request] = anthropic_report.requests
    assert str(openai_request.url).startswith("https://api.openai.com/v1/organization/usage/completions?")
    assert str(anthropic_request.url).startswith("https://api.anthropic.com/v1/organizations/usage_report/messages?")


@pytest.mark.parametrize("failure, reason", [
    (httpx2.Response(500, content=b'{"error": {"message": "The server had an error",\n "type": "server_error"}}'),
     'OpenAI usage report answered 500: {"error": {"message": "The server had an error", "type": "server_error"}} '
     '(after 4 attempts)'),
    (httpx2.ConnectError("[Errno 111] Connection refused"),
     "OpenAI usage report unreachable: [Errno 111] Connection refused (after 4 attempts)"),
    (httpx2.Response(200, text="<html>gateway</html>"),
     "OpenAI usage report answered with something other than JSON"),
])
def test_a_provider_outage_is_unavailable_with_the_reason_kept(recon_app, openai_report, failure, reason):
    app = recon_app(ANTHROPIC_ADMIN_KEY=None)
    insert(app, openai_ledger())
    openai_report.fail_with(failure)

    result = reconcile(app)["openai"]

    assert result["verdict"] == "unavailable"
    assert result["reason"] == reason
    # The ledger's side is still shown, per model.
    assert result["ledger"]["requests"] == 4 and result["reported"] is None and result["difference"] is None
    assert [row["model"] for row in result["models"]] == [GPT41_SNAPSHOT, MINI_SNAPSHOT]
    assert get_db(app)[ALERTS].count_documents({}) == 0


def test_an_error_that_quotes_the_admin_key_never_stores_it(recon_app, openai_report):
    app = recon_app(ANTHROPIC_ADMIN_KEY=None)
    openai_report.fail_with(httpx2.Response(401, content=f"Incorrect API key provided: {OPENAI_ADMIN_KEY}".encode()))

    result = reconcile(app)["openai"]

    assert result["reason"] == "OpenAI usage report answered 401: Incorrect API key provided: [admin key]"
    assert OPENAI_ADMIN_KEY not in str(get_db(app)[RECONCILIATIONS].find_one({"provider": "openai"}))


def test_no_admin_key_is_unavailable_without_calling_the_provider(recon_app, openai_report, anthropic_report):
    app = recon_app(OPENAI_ADMIN_KEY=None, ANTHROPIC_ADMIN_KEY=None)
    insert(app, openai_ledger() + [ledger_record("anthropic", HAIKU, HAIKU_SNAPSHOT, 100, 10)])

    results = reconcile(app)

    assert (results["openai"]["verdict"], results["openai"]["reason"]) == (
        "unavailable", "OPENAI_ADMIN_KEY is not set")
    assert (results["anthropic"]["verdict"], results["anthropic"]["reason"]) == (
        "unavailable", "ANTHROPIC_ADMIN_KEY is not set")
    assert openai_report.requests == [] and anthropic_report.requests == []


def test_providers_without_a_usage_report_are_not_supported(recon_app):
    app = recon_app(OPENAI_ADMIN_KEY=None, ANTHROPIC_ADMIN_KEY=None)
    insert(app, [ledger_record("gemini", "gemini-2.5-flash", "gemini-2.5-flash", 700, 70),
                 ledger_record("ollama", "llama3.2", "llama3.2", 50, 5)])

    results = reconcile(app)

    # demo is the enabled provider; gemini and ollama have records that day.
    assert list(results) == ["gemini", "ollama", "demo"]
    for name in ("gemini", "ollama", "demo"):
        assert results[name]["verdict"] == "not_supported"
        assert results[name]["reason"] == f"{name} publishes no usage report to compare with"
    assert results["gemini"]["ledger"] == {"requests": 1, "uncachedInputTokens": 700, "cachedInputTokens": 0,
                                           "cacheWriteTokens": 0, "outputTokens": 70, "estimatedRequests": 0}
    assert get_db(app)[RECONCILIATIONS].count_documents({"verdict": "not_supported"}) == 3


def test_a_second_run_replaces_the_first(recon_app, openai_report):
    app = recon_app(ANTHROPIC_ADMIN_KEY=None)
    insert(app, openai_ledger())
    openai_report.fail_with(httpx2.Response(503, text="overloaded"))
    assert reconcile(app)["openai"]["verdict"] == "unavailable"

    openai_report.fail_with(None)
    serve_openai(openai_report)
    assert reconcile(app)["openai"]["verdict"] == "match"

    stored = list(get_db(app)[RECONCILIATIONS].find({"provider": "openai"}))
    assert [(doc["_id"], doc["date"], doc["verdict"], doc["reason"]) for doc in stored] == [
        ("openai|2026-11-22", "2026-11-22", "match", None)]


def test_one_alert_per_provider_day_follows_its_numbers_and_is_resolved_by_a_match(recon_app, openai_report):
    from backend.alerts.services import dispatch_due

    app = recon_app(ANTHROPIC_ADMIN_KEY=None)
    insert(app, openai_ledger())
    delivered = []
    webhook = httpx.Client(transport=httpx.MockTransport(lambda request: (delivered.append(json.loads(request.content)),
                                                                          httpx.Response(200))[1]))
    db = get_db(app)
    for mini in ((4, 2600, 300, 255), (4, 2600, 300, 255), (2, 1000, 0, 100), (3, 1800, 300, 180),
                 (3, 1800, 300, 180)):
        serve_openai(openai_report, mini=mini)
        reconcile(app)
        with app.app_context():
            dispatch_due(db, "https://hooks.example.com/t", 3, NOW, client=webhook)
    assert [doc["_id"] for doc in db[ALERTS].find()] == ["reconciliation|openai|2026-11-22"]
    # Short, the same numbers again (nothing sent), over (updated), then a match (resolved), then
    # the match again (nothing sent).
    assert [(d["reconciliation"]["event"], d["reconciliation"]["verdict"]) for d in delivered] == [
        ("opened", "ledger_short"), ("updated", "ledger_over"), ("resolved", "match")]
    assert delivered[-1]["text"] == "TokenLedger reconciliation: openai 2026-11-22 now matches: resolved."


def test_an_update_queued_while_the_older_payload_is_being_sent_is_still_delivered(recon_app, openai_report):
    app = recon_app(ANTHROPIC_ADMIN_KEY=None)
    insert(app, openai_ledger())
    serve_openai(openai_report, mini=(4, 2600, 300, 255))
    reconcile(app)
    with app.app_context():
        db = get_db(app)
        claimed = alerts_repository.claim_due(db, NOW)  # a worker is sending the first payload
        serve_openai(openai_report, mini=(2, 1000, 0, 100))
        reconcile(app)  # the numbers change meanwhile
        alerts_repository.mark_sent(db, claimed, NOW)
        assert alerts_repository.claim_due(db, NOW)["payload"]["reconciliation"]["event"] == "updated"


def test_the_verdict_rule_as_data():
    assert services.verdict_of({"requests": 0, "outputTokens": 0}, 0) == "match"
    assert services.verdict_of({"requests": None, "outputTokens": -3}, 0) == "ledger_over"
    assert services.verdict_of({"requests": None, "outputTokens": -3}, 3) == "match"
    # A split that differs (provider: more uncached, fewer cached) is short: the provider billed more of one count.
    assert services.verdict_of({"uncachedInputTokens": 100, "cachedInputTokens": -100}, 0) == "ledger_short"
    assert services.due_day(NOW, 6) == DAY
    assert services.due_day(NOW, 10).isoformat() == "2026-11-21"


def test_a_429_is_tried_again_after_its_retry_after_within_the_run(recon_app, openai_report, waits):
    app = recon_app(ANTHROPIC_ADMIN_KEY=None)
    insert(app, openai_ledger())
    serve_openai(openai_report)
    openai_report.fail_with(httpx2.Response(429, headers={"Retry-After": "7"}, json={"error": {"message": "slow"}}),
                            times=2)

    assert reconcile(app)["openai"]["verdict"] == "match"
    assert waits == [7.0, 7.0] and len(openai_report.requests) == 4  # two refused, then both pages


def test_a_report_that_fails_again_never_replaces_a_stored_verdict(recon_app, openai_report, waits):
    app = recon_app(ANTHROPIC_ADMIN_KEY=None)
    insert(app, openai_ledger())
    serve_openai(openai_report, mini=(4, 2000, 300, 190))
    assert reconcile(app)["openai"]["verdict"] == "ledger_short"
    openai_report.fail_with(httpx2.Response(503, text="overloaded"))

    again = reconcile(app)["openai"]

    assert again["verdict"] == "ledger_short" and again["difference"]["requests"] == 1
    assert waits == [1, 2, 4]  # backoff between the four attempts
    with app.app_context():
        assert get_db(app)[RECONCILIATIONS].find_one({"_id": f"openai|{DAY}"})["verdict"] == "ledger_short"


def test_one_worker_at_a_time_runs_the_scheduled_pass(recon_app, openai_report):
    from backend.reconciliation import repository

    app = recon_app(ANTHROPIC_ADMIN_KEY=None)
    serve_openai(openai_report, mini=(0, 0, 0, 0), gpt41=(0, 0, 0, 0))
    with app.app_context():
        db = get_db(app)
        held = repository.take_lease(db, NOW, services.LEASE)  # another worker's run is under way
        assert held is not None and repository.take_lease(db, NOW, services.LEASE) is None
        assert services.reconcile_due(db, app.config, NOW) == [] and openai_report.requests == []
        repository.release_lease(db, held)
        assert "openai" in [r["provider"] for r in services.reconcile_due(db, app.config, NOW)]
        # Released after the run: the next one may start at once.
        assert repository.take_lease(db, NOW, services.LEASE) is not None


def test_an_estimate_recorded_under_the_alias_reconciles_under_the_snapshot_the_provider_reports(
        recon_app, openai_report):
    app = recon_app(ANTHROPIC_ADMIN_KEY=None)
    # One answered call, and one that timed out: estimated, under the alias it asked for, its
    # output unseen (0); the provider billed both under the snapshot, with the timed-out one's output.
    insert(app, [ledger_record("openai", MINI, MINI_SNAPSHOT, 1000, 50),
                 ledger_record("openai", MINI, MINI, 400, 0, estimated=True)])
    openai_report.pages = [openai_page(DAY_START, [openai_result(MINI_SNAPSHOT, 1400, 130, 0, 2)])]

    result = reconcile(app)["openai"]

    assert [row["model"] for row in result["models"]] == [MINI_SNAPSHOT]
    assert result["difference"] == {**ZERO, "outputTokens": 80}
    assert result["ledger"]["requests"] == 2 and result["ledger"]["estimatedRequests"] == 1
    assert result["verdict"] == "ledger_short" and result["explanation"].startswith(
        "1 call(s) of this day are estimates (the provider did not report their usage")


def test_an_alias_with_several_reported_snapshots_is_not_guessed(recon_app, openai_report):
    ledger = {MINI: {"requests": 1, "outputTokens": 5}}
    reported = {f"{MINI}-2024-07-18": {}, f"{MINI}-2025-01-01": {}}
    assert set(services.under_reported_names(ledger, reported)) == {MINI}
    assert set(services.under_reported_names(ledger, {"gpt-4o-mini-tts": {}})) == {MINI}  # not a dated snapshot
    assert set(services.under_reported_names(ledger, {f"{MINI}-2024-07-18": {}})) == {f"{MINI}-2024-07-18"}


def _midnight_call(start, latency_ms):
    """A gpt-4o-mini call whose request started at `start` and took `latency_ms`, as the recorder
    dates it (by its start)."""
    record = ledger_record("openai", MINI, MINI_SNAPSHOT, 500, 40)
    record.update(timestamp=start, date=start.date().isoformat(), month=start.strftime("%Y-%m"), latencyMs=latency_ms)
    return record


def _reconcile_on(app, day):
    with app.app_context():
        return by_provider(services.reconcile_day(get_db(app), app.config, day, NOW + timedelta(days=2)))["openai"]


def test_a_call_that_crosses_midnight_raises_no_alarm_on_either_day(recon_app, openai_report):
    app = recon_app(ANTHROPIC_ADMIN_KEY=None)
    late = _midnight_call(datetime(2026, 11, 22, 23, 59, 58, tzinfo=timezone.utc), 4000.0)  # billed 00:00:02
    insert(app, [ledger_record("openai", MINI, MINI_SNAPSHOT, 1000, 50), late])
    next_day = DAY + timedelta(days=1)

    # The provider bills the call when it completes: on the 23rd.
    openai_report.pages = [openai_page(DAY_START, [openai_result(MINI_SNAPSHOT, 1000, 50, 0, 1)])]
    first = _reconcile_on(app, DAY)
    openai_report.pages = [openai_page(DAY_END, [openai_result(MINI_SNAPSHOT, 500, 40, 0, 1)])]
    second = _reconcile_on(app, next_day)

    assert (first["verdict"], first["midnight"]) == (
        "match", {"datedBy": "completion", "movedOut": [late["callId"]], "movedIn": []})
    assert (second["verdict"], second["midnight"]) == (
        "match", {"datedBy": "completion", "movedOut": [], "movedIn": [late["callId"]]})
    assert get_db(app)[ALERTS].count_documents({}) == 0


def test_a_provider_that_dates_by_the_request_start_matches_too(recon_app, openai_report):
    app = recon_app(ANTHROPIC_ADMIN_KEY=None)
    late = _midnight_call(datetime(2026, 11, 22, 23, 59, 58, tzinfo=timezone.utc), 4000.0)
    insert(app, [ledger_record("openai", MINI, MINI_SNAPSHOT, 1000, 50), late])
    openai_report.pages = [openai_page(DAY_START, [openai_result(MINI_SNAPSHOT, 1500, 90, 0, 2)])]

    result = _reconcile_on(app, DAY)

    assert (result["verdict"], result["midnight"]["datedBy"]) == ("match", "request start")


def test_a_call_that_ended_before_midnight_never_moves_and_a_long_stream_does(recon_app, openai_report):
    app = recon_app(ANTHROPIC_ADMIN_KEY=None)
    before = _midnight_call(datetime(2026, 11, 22, 23, 58, 59, tzinfo=timezone.utc), 60_000.0)  # ended 23:59:59
    # A 10-minute stream from 23:55 (a stream is not bounded by LLM_TIMEOUT_SECONDS), and records whose
    # latency is no sane number (as old or damaged data may hold): those count where they started.
    stream = _midnight_call(datetime(2026, 11, 22, 23, 55, tzinfo=timezone.utc), 600_000.0)
    odd = [_midnight_call(datetime(2026, 11, 22, 23, 59, 59, tzinfo=timezone.utc), value)
           for value in (1e20, float("nan"), "12", -5)]
    del odd[0]["callId"]
    insert(app, [before, stream, *odd])
    openai_report.pages = [openai_page(DAY_START, [openai_result(MINI_SNAPSHOT, 2500, 200, 0, 5)])]

    result = _reconcile_on(app, DAY)

    assert (result["verdict"], result["midnight"]) == (
        "match", {"datedBy": "completion", "movedOut": [stream["callId"]], "movedIn": []})


def test_no_part_of_the_admin_key_survives_a_long_error_body(recon_app, openai_report):
    app = recon_app(ANTHROPIC_ADMIN_KEY=None)
    openai_report.fail_with(httpx2.Response(401, content=b"upstream said: " + b"x" * 160 + b" auth=Bearer "
                                            + OPENAI_ADMIN_KEY.encode()))
    result = reconcile(app)["openai"]
    assert result["verdict"] == "unavailable" and result["reason"].startswith("OpenAI usage report answered 401: ")
    assert OPENAI_ADMIN_KEY[:8] not in result["reason"]


@pytest.mark.parametrize("settings", [{"OPENAI_ADMIN_BASE_URL": "http://[::1"},
                                      {"OPENAI_ADMIN_KEY": OPENAI_ADMIN_KEY + "\u200b"}])
def test_a_report_that_cannot_even_be_requested_is_unavailable_and_the_others_go_on(recon_app, openai_report,
                                                                                 anthropic_report, settings):
    app = recon_app(**settings)
    anthropic_report.pages = [anthropic_page("2026-11-22T00:00:00Z", "2026-11-23T00:00:00Z", [])]
    results = reconcile(app)
    assert results["openai"]["verdict"] == "unavailable" and OPENAI_ADMIN_KEY not in results["openai"]["reason"]
    assert results["anthropic"]["verdict"] == "match"


def test_a_worker_that_waited_for_the_lease_does_not_repeat_the_run_it_waited_for(recon_app, openai_report,
                                                                                  monkeypatch):
    from backend.reconciliation import repository

    first = recon_app(ANTHROPIC_ADMIN_KEY=None)
    second = recon_app(ANTHROPIC_ADMIN_KEY=None, MONGO_CLIENT=get_db(first).client)
    serve_openai(openai_report, mini=(0, 0, 0, 0), gpt41=(0, 0, 0, 0))
    take_lease = repository.take_lease

    def the_first_runs_meanwhile(db, now, length):  # the second worker found work, then the first did it
        monkeypatch.setattr(repository, "take_lease", take_lease)
        with first.app_context():
            services.reconcile_due(get_db(first), first.config, NOW)
        return take_lease(db, now, length)

    monkeypatch.setattr(repository, "take_lease", the_first_runs_meanwhile)
    with second.app_context():
        assert services.reconcile_due(get_db(second), second.config, NOW) == []
    assert len(openai_report.requests) == 2  # the first run's two pages, once


def test_a_mismatch_after_a_resolution_opens_the_alert_again(recon_app, openai_report):
    app = recon_app(ANTHROPIC_ADMIN_KEY=None)
    insert(app, openai_ledger())
    events = []
    for mini in ((4, 2600, 300, 255), (3, 1800, 300, 180), (4, 2600, 300, 255)):
        serve_openai(openai_report, mini=mini)
        reconcile(app)
        with app.app_context():
            alert = alerts_repository.claim_due(get_db(app), NOW)
            events.append(alert["payload"]["reconciliation"]["event"])
            alerts_repository.mark_sent(get_db(app), alert, NOW)
    assert events == ["opened", "resolved", "opened"]


def test_models_that_cancel_out_in_the_totals_still_say_what_differs(recon_app, openai_report):
    app = recon_app(ANTHROPIC_ADMIN_KEY=None)
    insert(app, [ledger_record("openai", MINI, MINI_SNAPSHOT, 1000, 50)])
    openai_report.pages = [openai_page(DAY_START, [openai_result(f"{MINI_SNAPSHOT}-x", 1000, 50, 0, 1)])]
    assert reconcile(app)["openai"]["verdict"] == "ledger_short"
    text = get_db(app)[ALERTS].find_one()["payload"]["text"]
    assert "Provider minus ledger: no difference (by model: gpt-4o-mini-2024-07-18: requests -1" in text
    assert "gpt-4o-mini-2024-07-18-x: requests +1" in text


def test_embedding_calls_reconcile_against_openais_embeddings_report(recon_app, openai_report):
    from tests.reconciliation.fakes import openai_embeddings_result

    app = recon_app(ANTHROPIC_ADMIN_KEY=None)
    embeddings = [ledger_record("openai", "text-embedding-3-small", "text-embedding-3-small", tokens, 0)
                  for tokens in (640, 60)]
    for record in embeddings:
        record["operation"] = "embedding"
    insert(app, [*openai_ledger(), *embeddings])
    serve_openai(openai_report)
    openai_report.embedding_pages = [openai_page(DAY_START, [openai_embeddings_result("text-embedding-3-small",
                                                                                      700, 2)])]
    result = reconcile(app)["openai"]
    assert result["verdict"] == "match"
    rows = {row["model"]: row for row in result["models"]}
    assert rows["text-embedding-3-small"]["reported"] == {"requests": 2, "uncachedInputTokens": 700,
                                                          "cachedInputTokens": 0, "cacheWriteTokens": 0,
                                                          "outputTokens": 0}
    assert [request.url.path for request in openai_report.embedding_requests] == ["/v1/organization/usage/embeddings"]
    assert dict(openai_report.embedding_requests[0].url.params) == {
        "start_time": str(DAY_START), "end_time": str(DAY_END), "bucket_width": "1d", "group_by": "model"}

    # One embedding call OpenAI billed and the ledger lacks: ledger_short on the embedding model alone.
    openai_report.embedding_pages = [openai_page(DAY_START, [openai_embeddings_result("text-embedding-3-small",
                                                                                      900, 3)])]
    short = reconcile(app)["openai"]
    rows = {row["model"]: row for row in short["models"]}
    assert short["verdict"] == "ledger_short" and rows["text-embedding-3-small"]["verdict"] == "ledger_short"
    assert short["difference"] == {"requests": 1, "uncachedInputTokens": 200, "cachedInputTokens": 0,
                                   "cacheWriteTokens": 0, "outputTokens": 0}
