"""`flask reconcile` (and scripts/reconcile.py): reconcile one UTC day now.

Exit status, for cron: 0 every provider matched or has no report to compare; 1 a mismatch
(ledger_short or ledger_over); 3 no mismatch, but some provider's report was unavailable;
2 (click) a bad argument.
"""
from datetime import timedelta

import click
from flask import current_app
from flask.cli import with_appcontext

from backend import clock
from backend.db import get_db
from backend.reconciliation import services
from backend.usage.commands import database_command

EXIT_MISMATCH = 1
EXIT_UNAVAILABLE = 3


@click.command("reconcile")
@with_appcontext
@database_command
@click.option("--date", "day", type=click.DateTime(["%Y-%m-%d"]), help="The UTC day (default: yesterday).")
def reconcile_command(day):
    """Compare the ledger with the providers' usage reports for one UTC day and store the result."""
    now = clock.now()
    day = day.date() if day else now.date() - timedelta(days=1)
    if day > now.date():
        raise click.BadParameter("must not be in the future (UTC)", param_hint="--date")
    results = services.reconcile_day(get_db(), current_app.config, day, now)
    for result in results:
        if result["verdict"] in services.MISMATCHES:
            models = [row["model"] for row in result["models"] if row["verdict"] in services.MISMATCHES]
            detail = f"provider minus ledger: {services.describe(result['difference'])} ({', '.join(models)})"
        else:
            detail = result["reason"] or ""
        click.echo(f"{result['provider']:<10} {result['date']} {result['verdict']:<13} {detail}".rstrip())
    verdicts = {result["verdict"] for result in results}
    if verdicts & set(services.MISMATCHES):
        raise SystemExit(EXIT_MISMATCH)
    if services.UNAVAILABLE in verdicts:
        raise SystemExit(EXIT_UNAVAILABLE)
