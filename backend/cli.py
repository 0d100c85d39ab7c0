"""`flask` commands; scripts/ call the same functions.

Exit codes, for cron and deploy scripts (the same from `flask <command>` and scripts/*.py):
0 done; 1 differences found or records still spooled; 2 usage error (click's own);
3 database unreachable; 4 configuration error (including the embedded store where a
command would change or drain real data).
"""
import os
from datetime import date, timedelta

import click
from flask import current_app
from flask.cli import with_appcontext

from backend.auth.services import create_or_promote_admin
from backend.clock import now
from backend.db import get_db, store_is_embedded
from backend.indexes import ensure_indexes
from backend.runtime import runtime
from backend.reconciliation.commands import reconcile_command
from backend.testcases import embeddings
from backend.usage import rollups
from backend.usage.commands import ConfigurationProblem, database_command
from backend.usage.migrations import migration_report
from backend.usage.services import apply_retention

MAX_PROBLEMS_SHOWN = 50
EXIT_DIFFERENCES = 1


def require_real_database(action):
    """Commands that change or drain data refuse the embedded store: without MONGO_URI they would
    act on a throw-away in-memory copy (replay-spool would empty the real spool into it). The
    tests' apps (TESTING) use the embedded store on purpose."""
    if store_is_embedded() and not current_app.testing:
        raise ConfigurationProblem(f"MONGO_URI is not set: refusing to {action} the embedded in-memory store, "
                                   "which is discarded on exit")


def print_index_report(report):
    for collection, name, outcome in report:
        click.echo(f"{outcome:8} {collection}.{name}")
    created = sum(1 for *_, outcome in report if outcome == "created")
    click.echo(f"{created} created, {len(report) - created} already present")


@click.command("create-indexes")
@with_appcontext
@database_command
def create_indexes_command():
    """Create every index the service needs, with the ledger TTL of LEDGER_TTL_DAYS (idempotent)."""
    require_real_database("index")
    print_index_report(ensure_indexes(get_db(), ledger_ttl_days=current_app.config["LEDGER_TTL_DAYS"]))


@click.command("migrate")
@with_appcontext
@database_command
def migrate_command():
    """Apply the data migrations not applied yet (start-up does too) and list when each was applied."""
    require_real_database("migrate")
    for name, applied_at, changed in migration_report(get_db()):
        click.echo(f"{name}: applied {applied_at:%Y-%m-%d %H:%M:%S}Z, {changed} ledger record(s) changed")


@click.command("create-admin")
@with_appcontext
@click.option("--email", required=True, help="Account email; an existing account is promoted.")
@click.password_option("--password", help="Password for a new account (prompted when omitted).")
@database_command
def create_admin_command(email, password):
    """Create an admin account, or promote an existing one."""
    if len(password) < 8:
        raise click.BadParameter("must be at least 8 characters", param_hint="--password")
    require_real_database("create an admin in")
    user, outcome = create_or_promote_admin(get_db(), email, password, now=now())
    click.echo(f"{outcome}: {user['email']} (id {user['_id']}, role {user['role']})")


def ttl_horizon(ttl_days, today):
    """The first whole month that the ledger TTL cannot have touched yet, or None without a TTL."""
    if not ttl_days:
        return None
    cutoff = today - timedelta(days=ttl_days)
    if cutoff.day == 1:
        return cutoff
    return date(cutoff.year + cutoff.month // 12, cutoff.month % 12 + 1, 1)


@click.command("rebuild-rollups")
@with_appcontext
@click.option("--from", "start", type=click.DateTime(["%Y-%m-%d"]), help="First day (widened to its month).")
@click.option("--to", "end", type=click.DateTime(["%Y-%m-%d"]), help="Last day (widened to its month).")
@click.option("--check", is_flag=True,
              help="Only compare rollups with the ledger; exit 1 on any difference, 3 if the database is down.")
@database_command
def rebuild_rollups_command(start, end, check):
    """Rebuild the usage rollups from the ledger (idempotent), or check them."""
    start, end = (start.date() if start else None), (end.date() if end else None)
    if start and end and start > end:
        raise click.BadParameter("--from must be on or before --to", param_hint="--from")
    if not check:
        require_real_database("rebuild the rollups of")
    horizon = ttl_horizon(current_app.config["LEDGER_TTL_DAYS"], now().date())
    if horizon and (start is None or start < horizon):
        # The TTL removed raw records before the horizon; their totals live on only in the rollups.
        click.echo(f"LEDGER_TTL_DAYS is set: months before {horizon} may have expired records, "
                   f"so they are left as they are; starting at {horizon}")
        start = horizon
        if end and end < start:
            click.echo("nothing to do")
            return
    span = f"{start or 'the beginning'} .. {end or 'the end'} (whole months)"
    if check:
        problems = rollups.check(get_db(), start, end)
        for problem in problems[:MAX_PROBLEMS_SHOWN]:
            click.echo(
                f"drift {problem['rollup']} {problem['key']} {problem['field']}: "
                f"stored {problem['stored']} expected {problem['expected']}"
            )
        if problems:
            shown = min(len(problems), MAX_PROBLEMS_SHOWN)
            click.echo(f"{len(problems)} difference(s) in {span} ({shown} shown); run without --check to repair")
            raise SystemExit(EXIT_DIFFERENCES)
        click.echo(f"rollups match the ledger for {span}")
        return
    result = rollups.rebuild(get_db(), start, end)
    counts = [f"{count} {name}" for name, count in result.items()]
    click.echo(f"rebuilt {span}: {', '.join(counts[:-1])} and {counts[-1]} documents")


@click.command("apply-retention")
@with_appcontext
@click.option("--older-than", "days", type=click.IntRange(min=1), required=True, help="Age in days.")
@click.option("--mode", type=click.Choice(["deactivate", "delete"]), required=True,
              help="deactivate sets isActive false (the seed's soft delete); delete removes the records.")
@click.option("--dry-run", is_flag=True, help="Count what would change and change nothing.")
@database_command
def apply_retention_command(days, mode, dry_run):
    """Deactivate or delete ledger records older than N days; the rollups follow. Idempotent."""
    if not dry_run:
        require_real_database(f"{mode} records in")
    result = apply_retention(get_db(), days, mode, dry_run, now().date())
    verb = "would change" if dry_run else "changed"
    click.echo(f"{mode} records dated before {result['cutoff']}: {result['matched']} matched, "
               f"{result['changed'] if not dry_run else result['matched']} {verb}")


@click.command("replay-spool")
@with_appcontext
@database_command
def replay_spool_command():
    """Write spooled usage records to the ledger (each exactly once); exit 1 while records remain."""
    require_real_database("replay the spool into")
    state = runtime()
    replayed, left = state.writer.replay()
    click.echo(f"replayed {replayed} record(s) from {state.spool.path}; {left} still spooled")
    if left:
        raise SystemExit(EXIT_DIFFERENCES)


@click.command("embed-cases")
@with_appcontext
@click.option("--checkpoint", default="embed_cases.checkpoint.json", show_default=True, type=click.Path(dir_okay=False),
              help="Where the run notes the last case done; a run resumes after it.")
@click.option("--restart", is_flag=True, help="Ignore the checkpoint and start from the first case.")
@click.option("--limit", type=click.IntRange(min=1), help="Stop after this many cases.")
@database_command
def embed_cases_command(checkpoint, restart, limit):
    """Embed every saved test case that has no vector of the current EMBEDDING_PROVIDER/EMBEDDING_MODEL
    (a backfill, or a re-embedding after a model change): billed to each case's owner, inside their
    budgets. Exit 1 when a batch failed (run it again to resume)."""
    require_real_database("embed the test cases of")
    if restart and os.path.exists(checkpoint):
        os.remove(checkpoint)
    app, place = current_app._get_current_object(), embeddings.Checkpoint(checkpoint)
    total = embeddings.backfill_total(app, place)
    if limit is not None:
        total = min(total, limit)
    click.echo(f"{total} test case(s) to embed with {embeddings.key_prefix(embeddings.Embedder.of(app))}")
    with click.progressbar(length=total, label="Embedding", show_pos=True) as bar:
        try:
            embedded, skipped = embeddings.backfill(app, place, limit, progress=bar.update)
        except embeddings.BackfillStopped as exc:
            click.echo(f"\nstopped: {exc}; run again to resume after the last batch done ({checkpoint})")
            raise SystemExit(EXIT_DIFFERENCES) from None
    click.echo(f"embedded {embedded} test case(s); {skipped} skipped (owner gone or deactivated, model not allowed "
               "in their organization, or a worker was embedding it)")


def init_app(app):
    app.cli.add_command(create_indexes_command)
    app.cli.add_command(create_admin_command)
    app.cli.add_command(migrate_command)
    app.cli.add_command(rebuild_rollups_command)
    app.cli.add_command(apply_retention_command)
    app.cli.add_command(replay_spool_command)
    app.cli.add_command(reconcile_command)
    app.cli.add_command(embed_cases_command)

