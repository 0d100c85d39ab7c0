"""The background thread reconciles yesterday once the provider's data has settled."""
from datetime import datetime, timedelta, timezone

import httpx2

from backend import background
from backend.db import RECONCILIATIONS, get_db
from backend.reconciliation import services
from tests.reconciliation.fakes import openai_page, openai_result
from tests.reconciliation.support import DAY, DAY_START, NOW, insert, ledger_record


def stored(app):
    return sorted((doc["provider"], doc["date"], doc["verdict"]) for doc in get_db(app)[RECONCILIATIONS].find())


def test_a_pass_reconciles_the_settled_day_once(recon_app, openai_report):
    clock = {"now": datetime(2026, 11, 23, 5, 59, tzinfo=timezone.utc)}
    app = recon_app(ANTHROPIC_ADMIN_KEY=None, CLOCK=lambda: clock["now"])
    openai_report.pages = [openai_page(DAY_START, [])]

    # Before 06:00 (6 settle hours) the 22nd has not settled: the 21st is the day due.
    background.run_once(app)
    assert stored(app) == [("demo", "2026-11-21", "not_supported"), ("openai", "2026-11-21", "match")]

    # Passes within ten minutes do not look again; the first one after does, and takes the 22nd.
    clock["now"] = datetime(2026, 11, 23, 6, 5, tzinfo=timezone.utc)
    background.run_once(app)
    assert len(stored(app)) == 2
    clock["now"] = datetime(2026, 11, 23, 6, 10, tzinfo=timezone.utc)
    background.run_once(app)
    assert stored(app)[-2:] == [("openai", "2026-11-21", "match"), ("openai", "2026-11-22", "match")]
    assert len(openai_report.requests) == 2

    # Nothing more to do for the 22nd: later passes fetch nothing.
    clock["now"] = datetime(2026, 11, 23, 12, tzinfo=timezone.utc)
    background.run_once(app)
    assert len(openai_report.requests) == 2


def test_an_unavailable_report_is_tried_again_an_hour_later(recon_app, openai_report):
    app = recon_app(ANTHROPIC_ADMIN_KEY=None)
    openai_report.fail_with(httpx2.Response(500, content=b"down"))
    db = get_db(app)
    with app.app_context():
        assert [r["verdict"] for r in services.reconcile_due(db, app.config, NOW)] == ["unavailable", "not_supported"]
        assert services.reconcile_due(db, app.config, NOW + timedelta(minutes=59)) == []
        openai_report.fail_with(None)
        openai_report.pages = [openai_page(DAY_START, [openai_result("gpt-4o-mini-2024-07-18", 10, 1, 0, 1)])]
        retried = services.reconcile_due(db, app.config, NOW + timedelta(hours=1))
    assert [(r["provider"], r["verdict"]) for r in retried] == [("openai", "ledger_short")]
    assert ("openai", "2026-11-22", "ledger_short") in stored(app)


SNAPSHOT = "gpt-4o-mini-2024-07-18"


def _reconciled_during_the_day(recon_app, openai_report, reported_input, reported_output, reported_requests):
    """An app with one gpt-4o-mini call (100 in, 10 out) on DAY, reconciled at 15:00 that day
    against the given report: (app, its provisional openai result)."""
    app = recon_app(ANTHROPIC_ADMIN_KEY=None)
    insert(app, [ledger_record("openai", "gpt-4o-mini", SNAPSHOT, 100, 10)])
    openai_report.pages = [openai_page(DAY_START, [openai_result(SNAPSHOT, reported_input, reported_output, 0,
                                                                 reported_requests)])]
    with app.app_context():
        [early] = [r for r in services.reconcile_day(get_db(app), app.config, DAY,
                                                     datetime(2026, 11, 22, 15, tzinfo=timezone.utc))
                   if r["provider"] == "openai"]
    return app, early


def test_a_day_reconciled_before_it_settled_is_provisional_then_made_final_by_the_scheduled_pass(
        recon_app, openai_report):
    from backend.db import ALERTS

    # During the day (an in-flight stream, a report that lags): the provider shows one call more.
    app, early = _reconciled_during_the_day(recon_app, openai_report, 200, 20, 2)
    db = get_db(app)
    assert (early["verdict"], early["final"]) == ("ledger_short", False)
    assert db[ALERTS].count_documents({}) == 0  # provisional verdicts never alert
    with app.app_context():

        # After the day settled, the scheduled pass looks again; the call had landed meanwhile.
        insert(app, [ledger_record("openai", "gpt-4o-mini", "gpt-4o-mini-2024-07-18", 100, 10)])
        [late] = [r for r in services.reconcile_due(db, app.config, NOW) if r["provider"] == "openai"]
    assert (late["verdict"], late["final"]) == ("match", True)
    assert ("openai", "2026-11-22", "match") in stored(app) and get_db(app)[ALERTS].count_documents({}) == 0


def test_a_final_mismatch_is_looked_at_again_hourly_while_its_day_is_recent(recon_app, openai_report):
    app = recon_app(ANTHROPIC_ADMIN_KEY=None)
    openai_report.pages = [openai_page(DAY_START, [openai_result("gpt-4o-mini-2024-07-18", 10, 1, 0, 1)])]
    db = get_db(app)
    with app.app_context():
        [first] = [r for r in services.reconcile_due(db, app.config, NOW) if r["provider"] == "openai"]
        assert (first["verdict"], first["final"]) == ("ledger_short", True)
        assert services.reconcile_due(db, app.config, NOW + timedelta(minutes=59)) == []
        assert [r["provider"] for r in services.reconcile_due(db, app.config, NOW + timedelta(hours=1))] == ["openai"]
        # Three days on, the 22nd is no longer recent: its mismatch stands as it is.
        later = NOW + timedelta(days=3)
        assert all(r["date"] != "2026-11-22" for r in services.reconcile_due(db, app.config, later))


def test_a_loss_after_a_provisional_match_is_found_and_alerted_once_the_day_is_final(recon_app, openai_report):
    from backend.db import ALERTS

    # `reconcile.py --date <today>` during the day: a provisional match.
    app, early = _reconciled_during_the_day(recon_app, openai_report, 100, 10, 1)
    assert (early["verdict"], early["final"]) == ("match", False)
    db = get_db(app)
    with app.app_context():
        # Later that day the provider billed a call the ledger never saw.
        openai_report.pages = [openai_page(DAY_START, [openai_result("gpt-4o-mini-2024-07-18", 180, 25, 0, 2)])]
        [late] = [r for r in services.reconcile_due(db, app.config, NOW) if r["provider"] == "openai"]
    assert (late["verdict"], late["final"], late["difference"]["requests"]) == ("ledger_short", True, 1)
    assert [alert["payload"]["reconciliation"]["event"] for alert in get_db(app)[ALERTS].find()] == ["opened"]
