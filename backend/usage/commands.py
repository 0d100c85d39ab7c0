"""What every database command shares (`flask` commands and scripts/): a database that cannot be
reached is one line and exit 3, never a traceback, and a reachable one has its data migrations
applied before the command runs (commands run without the app's start-up tasks)."""
import functools

import click
from pymongo.errors import ConfigurationError as MongoConfigurationError
from pymongo.errors import ConnectionFailure

from backend.clock import now
from backend.db import get_db
from backend.runtime import runtime
from backend.usage.migrations import MigrationPending, migrate

EXIT_DATABASE_UNREACHABLE = 3
EXIT_CONFIGURATION = 4


class ConfigurationProblem(click.ClickException):
    exit_code = EXIT_CONFIGURATION


class DatabaseUnreachable(click.ClickException):
    exit_code = EXIT_DATABASE_UNREACHABLE


def _first_line(exc):
    """pymongo's server-selection message ends in a long topology dump; the cause comes first."""
    return str(exc).split(" (configured timeouts")[0].split(", Timeout:")[0].splitlines()[0]


# How long a migration another worker is applying is waited for before a command gives up.
MIGRATION_WAIT_SECONDS = 20


def _reachable_and_migrated():
    """The database answers (else ConnectionFailure, within MONGO_TIMEOUT_MS), and every data
    migration is applied: by this command if no worker did it yet (commands run without the app's
    start-up tasks), or by another worker it waits for."""
    db = get_db()
    db.command("ping")
    try:
        migrate(db, now(), wait_seconds=MIGRATION_WAIT_SECONDS)
    except MigrationPending as exc:
        raise click.ClickException(f"{exc}; run this again once it is done") from None
    runtime().migrations_done = True


def database_command(command):
    """A database that cannot be reached is one line and exit 3, never a traceback; a reachable
    one has its migrations applied before the command runs."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            _reachable_and_migrated()
            return command(*args, **kwargs)
        except ConnectionFailure as exc:
            raise DatabaseUnreachable(f"database unreachable: {_first_line(exc)}") from None
        except MongoConfigurationError as exc:
            raise ConfigurationProblem(f"MONGO_URI cannot be used: {_first_line(exc)}") from None

    return wrapper
