"""`flask` commands; scripts/ call the same functions."""
import click
from flask.cli import with_appcontext

from backend.auth.services import ensure_admin
from backend.db import get_db
from backend.indexes import ensure_indexes


def print_index_report(report):
    for collection, name, outcome in report:
        click.echo(f"{outcome:8} {collection}.{name}")
    created = sum(1 for *_, outcome in report if outcome == "created")
    click.echo(f"{created} created, {len(report) - created} already present")


@click.command("create-indexes")
@with_appcontext
def create_indexes_command():
    """Create every index the service needs (idempotent)."""
    print_index_report(ensure_indexes(get_db()))


@click.command("create-admin")
@with_appcontext
@click.option("--email", required=True, help="Account email; an existing account is promoted.")
@click.password_option("--password", help="Password for a new account (prompted when omitted).")
def create_admin_command(email, password):
    """Create an admin account, or promote an existing one."""
    if len(password) < 8:
        raise click.BadParameter("must be at least 8 characters", param_hint="--password")
    user, outcome = ensure_admin(get_db(), email, password)
    click.echo(f"{outcome}: {user['email']} (id {user['_id']}, role {user['role']})")


def init_app(app):
    app.cli.add_command(create_indexes_command)
    app.cli.add_command(create_admin_command)
