"""`flask reconcile --date` and scripts/reconcile.py: what they print and their exit status."""
import os
import subprocess
import sys

import httpx2

from backend.db import RECONCILIATIONS, get_db
from tests.helpers import ROOT, SETTINGS
from tests.reconciliation.fakes import openai_page, openai_result
from tests.reconciliation.support import DAY_START, insert, ledger_record


def run(app, *args):
    return app.test_cli_runner().invoke(args=["reconcile", *args])


def test_all_matched_or_not_supported_exits_0(recon_app, openai_report):
    app = recon_app(ANTHROPIC_ADMIN_KEY=None)
    insert(app, [ledger_record("openai", "gpt-4o-mini", "gpt-4o-mini-2024-07-18", 100, 10)])
    openai_report.pages = [openai_page(DAY_START, [openai_result("gpt-4o-mini-2024-07-18", 100, 10, 0, 1)])]

    result = run(app, "--date", "2026-11-22")

    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        "openai     2026-11-22 match",
        "demo       2026-11-22 not_supported demo publishes no usage report to compare with",
    ]
    assert get_db(app)[RECONCILIATIONS].count_documents({"date": "2026-11-22"}) == 2


def test_a_mismatch_exits_1_and_names_the_difference(recon_app, openai_report):
    app = recon_app(ANTHROPIC_ADMIN_KEY=None)
    openai_report.pages = [openai_page(DAY_START, [openai_result("gpt-4o-mini-2024-07-18", 1200, 340, 0, 1)])]

    result = run(app, "--date", "2026-11-22")

    assert result.exit_code == 1
    assert result.output.splitlines()[0] == (
        "openai     2026-11-22 ledger_short  provider minus ledger: requests +1, uncached input tokens +1,200, "
        "output tokens +340 (gpt-4o-mini-2024-07-18)")


def test_an_unavailable_report_exits_3(recon_app, openai_report):
    app = recon_app(ANTHROPIC_ADMIN_KEY=None)
    openai_report.fail_with(httpx2.ConnectError("[Errno 111] Connection refused"))

    result = run(app, "--date", "2026-11-22")

    assert result.exit_code == 3
    assert result.output.splitlines()[0] == (
        "openai     2026-11-22 unavailable   OpenAI usage report unreachable: [Errno 111] Connection refused "
        "(after 4 attempts)")


def test_the_default_day_is_yesterday_by_the_app_clock(recon_app):
    app = recon_app(OPENAI_ADMIN_KEY=None, ANTHROPIC_ADMIN_KEY=None)
    result = run(app)
    assert result.exit_code == 0, result.output
    assert result.output == "demo       2026-11-22 not_supported demo publishes no usage report to compare with\n"


def test_bad_or_future_dates_exit_2(recon_app):
    app = recon_app()
    assert run(app, "--date", "22/11/2026").exit_code == 2
    future = run(app, "--date", "2026-11-24")
    assert future.exit_code == 2 and "must not be in the future" in future.output


def script(*args, **env):
    clean = {name: value for name, value in os.environ.items() if name not in SETTINGS}
    clean.update(BACKGROUND_TASKS="false", **env)
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "reconcile.py"), *args], env=clean,
                          capture_output=True, text=True, timeout=120)


def test_the_script_runs_the_same_command():
    done = script("--date", "2026-11-22")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "demo       2026-11-22 not_supported demo publishes no usage report to compare with\n"
    # OpenAI enabled without an admin key: nothing is fetched and the day is unavailable.
    done = script("--date", "2026-11-22", OPENAI_API_KEY="sk-test")
    assert done.returncode == 3
    assert done.stdout == "openai     2026-11-22 unavailable   OPENAI_ADMIN_KEY is not set\n"
    assert script("--date", "not-a-day").returncode == 2
