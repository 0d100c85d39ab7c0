"""Shared start for scripts: import the backend from the repository root, parse the script's
arguments, then build the app and run the command in it.

Arguments are parsed before the app is built, so `--help` and usage errors are immediate and
need no database. Exit codes are backend/cli.py's: 0 done, 1 differences or records left,
2 usage error, 3 database unreachable, 4 configuration error.
"""
import sys
from pathlib import Path

import click

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backend.usage.commands import EXIT_CONFIGURATION  # noqa: E402
from backend.config import ConfigError  # noqa: E402


# A script facing an unreachable database says so within this long (or MONGO_TIMEOUT_MS, if shorter).
SCRIPT_SERVER_SELECTION_MS = 3000


def script_app(overrides=None):
    """The app without the start-up database tasks or background thread, so that a script reports
    what it did itself and an unreachable database is its own one-line error (exit 3)."""
    from backend import create_app
    from backend.config import load_config

    try:
        timeout = min(load_config()[0]["MONGO_TIMEOUT_MS"], SCRIPT_SERVER_SELECTION_MS)
        return create_app({"START_UP_TASKS": False, "BACKGROUND_TASKS": False, "MONGO_TIMEOUT_MS": timeout,
                           **(overrides or {})})
    except ConfigError as exc:
        print(f"Configuration error: {exc}", file=sys.stderr)
        sys.exit(EXIT_CONFIGURATION)


def run_command(command, prog_name):
    """Run one of backend/cli.py's click commands inside the app, with this script's arguments."""
    try:
        context = command.make_context(prog_name, sys.argv[1:])
        app = script_app()
        with app.app_context(), context:
            command.invoke(context)
    except click.exceptions.Exit as exc:  # --help
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.Abort:
        sys.exit("Aborted!")
